"""One error family for the whole tool.

Every failure a user can cause or meet is a :class:`LedgerError` that knows its exit code (the table in the CLI
contract) and a one-line message naming the object and the reason. The CLI catches this one base class and prints
``error: <message>``; nothing else ever reaches the user as a traceback.
"""

from __future__ import annotations


class LedgerError(Exception):
    """Base class: ``exit_code`` follows the CLI contract, ``str(err)`` is the one-line message."""

    exit_code = 1

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message


class CheckFailed(LedgerError):
    """The thing checked does not hold: tampered or missing evidence, bad signature, criteria not met (exit 1)."""

    exit_code = 1


class VerificationFailed(CheckFailed):
    """A verification step failed; ``check`` names the step, ``obj`` the object that broke it."""

    def __init__(self, check: str, message: str, obj: str = "") -> None:
        super().__init__(message)
        self.check = check
        self.obj = obj


class UsageError(LedgerError):
    """Malformed argument or unusable input the user gave on the command line (exit 2)."""

    exit_code = 2


class NotFound(LedgerError):
    """No such store, run, item or commit (exit 3)."""

    exit_code = 3


class Contention(LedgerError):
    """The run is already sealed, or another writer won the race; nothing was written (exit 4)."""

    exit_code = 4


class StorageError(LedgerError):
    """Storage unavailable or I/O error; nothing was left half-written (exit 5)."""

    exit_code = 5


class ForeignObject(StorageError):
    """The store's location holds something that is not a ledger object (exit 5; ``init`` refuses it, exit 2)."""

    def __init__(self, message: str, key: str) -> None:
        super().__init__(message)
        self.key = key


class Refused(LedgerError):
    """Evidence refused: invalid name, unknown kind, invalid record, secret detected (exit 6)."""

    exit_code = 6


class Corrupt(CheckFailed):
    """An object in the store is damaged: truncated, or its bytes do not match its name (exit 1)."""


class DecodeError(Corrupt):
    """Bytes that claim to be a ledger object are not its canonical encoding (exit 1: the store is corrupt)."""
