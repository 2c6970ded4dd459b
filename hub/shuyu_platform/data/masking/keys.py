"""Keys: tenant keys from the master secret, purpose keys, the fast keyed hash of pseudonyms."""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import importlib
from collections.abc import Callable
from typing import Any, Final

import numpy as np
import numpy.typing as npt

#: Characters of base32 after a pseudonym's prefix (80 bits of the HMAC).
TOKEN_CHARS: Final[int] = 16
_TOKEN_BYTES: Final[int] = TOKEN_CHARS * 5 // 8
_BASE32: Final[bytes] = b"abcdefghijklmnopqrstuvwxyz234567"
#: Every 10-bit number as its two base32 characters, one uint16 each (native byte order).
_BASE32_PAIRS: Final = (
    np.array([[a, b] for a in _BASE32 for b in _BASE32], dtype=np.uint8).view(np.uint16).reshape(-1)
)

#: Shortest master secret / tenant key accepted, in bytes.
MIN_KEY_BYTES: Final[int] = 16


# ================================================================================ keys


def tenant_key(secret: bytes, tenant: str) -> bytes:
    """Derive the 32-byte masking key of ``tenant`` from the platform's master ``secret``.

    ``HMAC-SHA256(secret, "shuyu.masking.tenant-key.v1" NUL tenant)``. The master secret
    stays with the platform; the derived key is only ever used to derive per-purpose
    sub-keys, and neither appears in any view or its metadata.
    """
    if not isinstance(secret, bytes | bytearray) or len(secret) < MIN_KEY_BYTES:
        raise ValueError(f"the master secret must be at least {MIN_KEY_BYTES} bytes")
    if not isinstance(tenant, str) or not tenant:
        raise ValueError("the tenant must be a non-empty string")
    message = b"shuyu.masking.tenant-key.v1\x00" + tenant.encode("utf-8")
    return hmac.digest(bytes(secret), message, "sha256")


def import_key(secret: bytes, import_id: str) -> bytes:
    """The 32-byte key of one merchant import (R21), from the platform's master ``secret``.

    ``HMAC-SHA256(secret, "shuyu.masking.import-key.v1" NUL import_id)``: the pseudonyms
    of an import's identifier columns are its own, so they match no view's pseudonyms
    (each view uses its tenant's key) and no other import's.
    """
    if not isinstance(secret, bytes | bytearray) or len(secret) < MIN_KEY_BYTES:
        raise ValueError(f"the master secret must be at least {MIN_KEY_BYTES} bytes")
    message = b"shuyu.masking.import-key.v1\x00" + import_id.encode("utf-8")
    return hmac.digest(bytes(secret), message, "sha256")


def _fast_sha256() -> Callable[[bytes], Any]:
    """The SHA-256 constructor with the least overhead per object.

    For messages of a few bytes the cost is creating hash objects, not hashing: CPython's
    own SHA-256 (``_sha2`` from 3.12, ``_sha256`` before) copies a state about 20% faster
    than OpenSSL's. Both compute the same SHA-256; any other build falls back to hashlib.
    """
    for module in ("_sha2", "_sha256"):
        with contextlib.suppress(ImportError, AttributeError):
            constructor = importlib.import_module(module).sha256
            if constructor(b"abc").digest() == hashlib.sha256(b"abc").digest():
                return constructor
    return hashlib.sha256


_SHA256: Final = _fast_sha256()


class _Hmac:
    """HMAC-SHA256 (RFC 2104) under one key, with the key's two padded blocks hashed once.

    Hashing millions of short values is dominated by per-call overhead; copying the two
    prepared SHA-256 states is more than twice as fast as ``hmac.digest`` per value, and
    gives the same bytes.
    """

    def __init__(self, key: bytes) -> None:
        block = key if len(key) <= 64 else hashlib.sha256(key).digest()
        block = block.ljust(64, b"\x00")
        self._inner = _SHA256(bytes(b ^ 0x36 for b in block))
        self._outer = _SHA256(bytes(b ^ 0x5C for b in block))

    def digests(self, values: list[bytes]) -> npt.NDArray[np.uint8]:
        """The HMAC of each value, as an ``(n, 32)`` byte matrix."""
        inner_copy, outer_copy = self._inner.copy, self._outer.copy
        out: list[bytes] = []
        append = out.append
        for value in values:
            inner = inner_copy()
            inner.update(value)
            outer = outer_copy()
            outer.update(inner.digest())
            append(outer.digest())
        return np.frombuffer(b"".join(out), dtype=np.uint8).reshape(len(values), 32)


def _purpose_key(key: bytes, purpose: str) -> _Hmac:
    """The keyed hash of one purpose (``pseudonymize``, ``date_shift``) under ``key``."""
    if not isinstance(key, bytes | bytearray) or len(key) < MIN_KEY_BYTES:
        raise ValueError(f"the masking key must be at least {MIN_KEY_BYTES} bytes")
    return _Hmac(hmac.digest(bytes(key), b"shuyu.masking." + purpose.encode(), "sha256"))
