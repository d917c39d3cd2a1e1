"""Sealing shards for the store: AES-256-GCM with a key per blob, so whoever runs the store cannot read them or
change them unnoticed; only the leased provider is given the key, over its authenticated channel."""

from __future__ import annotations

import os

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from builder.errors import AibError

MAGIC = b"AIBSEAL1"


class SealError(AibError):
    """Sealed bytes that do not open with their key (tampered, truncated or another blob)."""


def new_key() -> bytes:
    """A fresh AES-256 key."""
    return AESGCM.generate_key(bit_length=256)


def seal(plain: bytes, key: bytes, label: str) -> bytes:
    """`plain` encrypted and authenticated under `key`; `label` (its plaintext hash) is bound in as associated data."""
    nonce = os.urandom(12)
    return MAGIC + nonce + AESGCM(key).encrypt(nonce, plain, label.encode())


def unseal(sealed: bytes, key: bytes, label: str) -> bytes:
    """The plaintext of `seal`'s output; SealError when it was altered or is not the blob `label` names."""
    if not sealed.startswith(MAGIC) or len(sealed) < len(MAGIC) + 12 + 16:
        raise SealError("the sealed blob is not in the expected format")
    nonce, body = sealed[len(MAGIC) : len(MAGIC) + 12], sealed[len(MAGIC) + 12 :]
    try:
        return AESGCM(key).decrypt(nonce, body, label.encode())
    except Exception:  # cryptography's InvalidTag: altered bytes, another key or another label
        raise SealError("the sealed blob does not open with its key: it was altered or is another blob") from None


__all__ = ["SealError", "new_key", "seal", "unseal"]
