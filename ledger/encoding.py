"""Canonical encoding of ledger objects (spec/encoding.md).

Objects are encoded as a strict subset of MessagePack so that one value has exactly one byte string: nil, booleans,
integers in [-2**63, 2**64-1] in their shortest form, UTF-8 strings (str family), byte strings (bin family), arrays,
and maps whose keys are strings sorted by their UTF-8 bytes with no duplicates. Floats, extension types and anything
else are refused, as are bytes that decode but are not the canonical encoding of what they decode to. Decoding is
defensive: it reads untrusted bytes from stores and bundles, so every failure is a :class:`DecodeError`.
"""

from __future__ import annotations

from typing import Any

import msgpack

from .errors import DecodeError

Value = Any  # None | bool | int | str | bytes | list[Value] | dict[str, Value]

_INT_MIN = -(2**63)
_INT_MAX = 2**64 - 1
MAX_DEPTH = 32
_SCALARS = frozenset((str, bytes, bool, type(None)))  # exact types; subclasses take the isinstance checks


def _check(value: Value, depth: int, keys_sorted: bool = False) -> None:
    """Refuse every value outside the canonical subset before it is encoded or after it is decoded."""
    if depth > MAX_DEPTH:
        raise DecodeError(f"nesting deeper than {MAX_DEPTH}")
    if value is None or isinstance(value, (bool, str, bytes)):
        return
    if isinstance(value, int):
        if not _INT_MIN <= value <= _INT_MAX:
            raise DecodeError(f"integer {value} outside the 64-bit range")
        return
    # Children that are plain scalars are accepted inline (no call per element: this runs over every entry of a
    # million-item batch); anything else, and anything at the depth limit, goes through the full check.
    inline = depth < MAX_DEPTH
    if isinstance(value, list):
        for v in value:
            tv = type(v)
            if inline and (tv in _SCALARS or (tv is int and _INT_MIN <= v <= _INT_MAX)):
                continue
            _check(v, depth + 1, keys_sorted)
        return
    if isinstance(value, dict):
        prev: bytes | None = None
        for k, v in value.items():
            if not isinstance(k, str):
                raise DecodeError(f"map key {k!r} is not a string")
            if keys_sorted:
                kb = k.encode("utf-8")
                if prev is not None and kb <= prev:
                    raise DecodeError("map keys are not in canonical (sorted, unique) order")
                prev = kb
            tv = type(v)
            if inline and (tv in _SCALARS or (tv is int and _INT_MIN <= v <= _INT_MAX)):
                continue
            _check(v, depth + 1, keys_sorted)
        return
    raise DecodeError(f"type {type(value).__name__} is not allowed in canonical encoding")


def _sorted(value: Value) -> Value:
    if isinstance(value, dict):
        return {k: _sorted(value[k]) for k in sorted(value, key=lambda s: s.encode("utf-8"))}
    if isinstance(value, list):
        return [v if type(v) in _SCALARS or type(v) is int else _sorted(v) for v in value]
    return value


def encode(value: Value) -> bytes:
    """The canonical bytes of ``value``; raises :class:`DecodeError` for values outside the subset."""
    _check(value, 0)
    try:
        out = msgpack.packb(_sorted(value), use_bin_type=True)
    except UnicodeEncodeError:  # a lone surrogate: not a sequence of Unicode scalar values, so not UTF-8
        raise DecodeError("string is not valid Unicode (it holds a surrogate code point)") from None
    assert isinstance(out, bytes)
    return out


def encode_presorted(value: Value) -> bytes:
    """:func:`encode` for a value whose maps were built with their keys already in canonical order (large batches):
    checked exactly as encode() checks it, key order included, but not copied to re-sort it. Same bytes."""
    try:
        _check(value, 0, keys_sorted=True)
    except DecodeError:
        return encode(value)  # encode() re-sorts what it can, and refuses the rest with its own message
    return pack_trusted(value)


def pack_trusted(value: Value) -> bytes:
    """Encode a value the caller built with keys already in canonical order and only allowed types (hot paths)."""
    out = msgpack.packb(value, use_bin_type=True)
    assert isinstance(out, bytes)
    return out


_PACKER = msgpack.Packer(use_bin_type=True)


def array_header(n: int) -> bytes:
    out = _PACKER.pack_array_header(n)
    assert isinstance(out, bytes)
    return out


def _refuse_ext(code: int, data: bytes) -> Value:
    raise DecodeError(f"extension type {code} is not allowed")


def decode(data: bytes, what: str = "object") -> Value:
    """Decode canonical bytes; anything that is not exactly one canonical value is a :class:`DecodeError`."""
    try:
        value = msgpack.unpackb(
            data,
            raw=False,
            use_list=True,
            strict_map_key=True,
            ext_hook=_refuse_ext,
        )
    except DecodeError as exc:
        raise DecodeError(f"{what}: {exc}") from None
    except msgpack.ExtraData:
        raise DecodeError(f"{what}: trailing bytes after the encoded value") from None
    except (ValueError, TypeError, msgpack.UnpackException, RecursionError, UnicodeDecodeError) as exc:
        raise DecodeError(f"{what}: not valid canonical MessagePack ({type(exc).__name__})") from None
    try:
        _check(value, 0, keys_sorted=True)
    except DecodeError as exc:
        raise DecodeError(f"{what}: {exc}") from None
    # Keys are already in canonical order, so packing as-is reproduces canonical bytes iff the input was canonical.
    if msgpack.packb(value, use_bin_type=True) != data:
        raise DecodeError(f"{what}: not in canonical form (key order, duplicate keys or non-shortest encoding)")
    return value


def decode_map(data: bytes, what: str, required: dict[str, type | tuple[type, ...]],
               optional: dict[str, type | tuple[type, ...]] | None = None) -> dict[str, Value]:
    """Decode a map with exactly the given fields and types; unknown fields are refused (fail closed)."""
    value = decode(data, what)
    return check_fields(value, what, required, optional)


def check_fields(value: Value, what: str, required: dict[str, type | tuple[type, ...]],
                 optional: dict[str, type | tuple[type, ...]] | None = None) -> dict[str, Value]:
    """Check that ``value`` is a map with exactly the required (and allowed optional) fields of the given types."""
    if not isinstance(value, dict):
        raise DecodeError(f"{what}: expected a map")
    optional = optional or {}
    for key in value:
        if key not in required and key not in optional:
            raise DecodeError(f"{what}: unknown field {key!r}")
    for key in required:
        if key not in value:
            raise DecodeError(f"{what}: missing field {key!r}")
    for key, typ in {**required, **optional}.items():
        if key in value and not _is(value[key], typ):
            raise DecodeError(f"{what}: field {key!r} has the wrong type")
    return value


def _is(v: Value, typ: type | tuple[type, ...]) -> bool:
    types = typ if isinstance(typ, tuple) else (typ,)
    if isinstance(v, bool) and bool not in types:
        return False
    return isinstance(v, types)
