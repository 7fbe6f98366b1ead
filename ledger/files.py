"""Reading the small files a user names on the command line (policies, allow-lists, keys, properties): bounded,
and every failure one of the project's errors. Such a path may be anything -- a directory, /dev/zero, a name with
a NUL byte -- and none of that may end in a traceback or an unbounded read."""

from __future__ import annotations

import os

from .errors import NotFound, UsageError

MAX_SMALL_FILE = 1 << 20  # a policy, an allow-list, a key or a properties file is a few KiB


def read_small_file(path: str | os.PathLike[str], what: str, limit: int = MAX_SMALL_FILE) -> bytes:
    """The file's bytes; NotFound (exit 3) when it is missing, UsageError (exit 2) for anything else wrong."""
    try:
        with open(path, "rb") as f:
            data = f.read(limit + 1)
    except FileNotFoundError:
        raise NotFound(f"{what} {path}: no such file") from None
    except IsADirectoryError:
        raise UsageError(f"{what} {path}: is a directory") from None
    except OSError as exc:
        raise UsageError(f"{what} {path}: cannot read ({exc.strerror or exc})") from None
    except ValueError:  # e.g. an embedded NUL byte in the path
        raise UsageError(f"{what} {path!r}: not a valid path") from None
    if len(data) > limit:
        raise UsageError(f"{what} {path}: larger than {limit} bytes, too large to be one")
    return data
