"""ledger: evidence-first run closure — content-addressed evidence, sealed once by a signed commit, verifiable
offline with only a public key. See README.md for the walkthrough and spec/ for the format."""

from __future__ import annotations

from .api import Ledger, RunItems
from .closure import SealResult
from .errors import LedgerError
from .keys import PublicKey, SigningKey, generate_keyfile, load_public_key, load_signing_key
from .objects import ItemEntry
from .verify import Check, VerifyResult

__version__ = "0.1.0"

__all__ = ["Ledger", "RunItems", "SealResult", "LedgerError", "PublicKey", "SigningKey", "generate_keyfile",
           "load_public_key", "load_signing_key", "ItemEntry", "Check", "VerifyResult", "__version__"]
