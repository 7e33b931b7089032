"""Deterministic UIDs: the same parts always give the same UID, different parts differ."""

from __future__ import annotations

import hashlib


def hashed_uid(*parts: str) -> str:
    """A "2.25." UID from the first 128 bits of SHA-256 of the parts (unit-separated).

    DICOM PS3.5 B.2 allows 2.25 followed by a 128-bit integer; hashing keeps the
    mapping reproducible (resumed runs, consistent de-identification) without a registry.
    """
    digest = hashlib.sha256("\x1f".join(parts).encode("utf-8")).digest()
    return f"2.25.{int.from_bytes(digest[:16], 'big')}"
