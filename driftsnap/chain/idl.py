"""The Drift program's account layouts, read from the IDL that driftpy ships.

Offsets are never typed by hand: :func:`dtype` compiles an IDL account or struct into a numpy
structured dtype whose field offsets are the IDL's own. Borsh packs fields without alignment, and
Drift's zero-copy accounts spell out their padding in the IDL, so the packed layout is also the
on-chain ``repr(C)`` layout; ``accounts.SIZES`` checks the result against the real account sizes.
"""

from __future__ import annotations

import functools
import hashlib
import json
from importlib import resources
from typing import Any, Final

import numpy as np

_PRIMITIVES: Final[dict[str, np.dtype[Any]]] = {
    "bool": np.dtype("u1"),
    "u8": np.dtype("u1"),
    "i8": np.dtype("i1"),
    "u16": np.dtype("<u2"),
    "i16": np.dtype("<i2"),
    "u32": np.dtype("<u4"),
    "i32": np.dtype("<i4"),
    "u64": np.dtype("<u8"),
    "i64": np.dtype("<i8"),
    # numpy has no 128-bit integers; nothing driftsnap reads is one, so they stay opaque bytes.
    "u128": np.dtype("V16"),
    "i128": np.dtype("V16"),
    "publicKey": np.dtype(("u1", (32,))),
}


@functools.cache
def text() -> str:
    """The raw ``driftpy/idl/drift.json`` (the program version driftpy was built against)."""
    return resources.files("driftpy").joinpath("idl/drift.json").read_text()


@functools.cache
def _document() -> dict[str, Any]:
    doc: dict[str, Any] = json.loads(text())
    return doc


@functools.cache
def _definitions() -> dict[str, dict[str, Any]]:
    doc = _document()
    return {d["name"]: d for d in (*doc["accounts"], *doc["types"])}


def discriminator(account: str) -> bytes:
    """Anchor's account discriminator: the first 8 bytes of ``sha256("account:<Name>")``."""
    return hashlib.sha256(f"account:{account}".encode()).digest()[:8]


def variants(enum: str) -> tuple[str, ...]:
    """The variant names of an IDL enum, in borsh index order."""
    return tuple(v["name"] for v in _definitions()[enum]["type"]["variants"])


@functools.cache
def dtype(name: str) -> np.dtype[np.void]:
    """The packed numpy dtype of an IDL account or struct (without the 8-byte discriminator)."""
    definition = _definitions()[name]["type"]
    if definition["kind"] != "struct":
        raise ValueError(f"{name} is an IDL {definition['kind']}, not a struct")
    names: list[str] = []
    formats: list[np.dtype[Any]] = []
    offsets: list[int] = []
    offset = 0
    for field in definition["fields"]:
        field_dtype = _field_dtype(field["type"])
        names.append(_snake(field["name"]))
        formats.append(field_dtype)
        offsets.append(offset)
        offset += field_dtype.itemsize
    return np.dtype({"names": names, "formats": formats, "offsets": offsets, "itemsize": offset})


def offset(account: str, field: str) -> int:
    """Byte offset of a top-level field in an account's data, the 8-byte discriminator included."""
    fields = dtype(account).fields
    if fields is None or field not in fields:
        raise ValueError(f"{account} has no field {field}")
    return 8 + int(fields[field][1])


def _field_dtype(spec: str | dict[str, Any]) -> np.dtype[Any]:
    if isinstance(spec, str):
        return _PRIMITIVES[spec]
    if "array" in spec:
        inner, length = spec["array"]
        return np.dtype((_field_dtype(inner), (length,)))
    target = _definitions()[spec["defined"]]["type"]
    if target["kind"] == "struct":
        return dtype(spec["defined"])
    # Every enum in the accounts we read has unit variants only: borsh writes one u8 index.
    if any("fields" in v for v in target["variants"]):
        raise ValueError(f"{spec['defined']} carries data and has no fixed size")
    return np.dtype("u1")


def _snake(name: str) -> str:
    return "".join(f"_{c.lower()}" if c.isupper() else c for c in name)
