"""Provider identity: a wallet signs a one-time challenge (EIP-191, Sign-In-with-Ethereum style) and gets a
short-lived bearer token; lease tokens are scoped to one lease.

Tokens are `<payload>.<HMAC-SHA256>` with a secret of the coordinator's installation: the coordinator checks them
without a database read, and nobody else can mint one. A challenge is used once and expires; a lease token is
refused once its lease has ended (checked by the lease routes).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import secrets
import time
from dataclasses import dataclass
from datetime import timedelta

from builder.errors import AibError
from runtime.config import local_secret

CHALLENGE_SECONDS = 300
WALLET_TOKEN_SECONDS = 900
LEASE_TOKEN_SECONDS = 600


class AuthError(AibError):
    """A sign-in or a token that is not accepted (one sentence says why)."""


@dataclass(frozen=True)
class Claims:
    """What a valid token says: whose wallet, which scope (`wallet` or `lease:<id>`), until when."""

    wallet: str
    scope: str
    expires: int
    token_id: str

    @property
    def lease_id(self) -> str | None:
        """The lease a lease token is for (None for a wallet token)."""
        return self.scope.removeprefix("lease:") if self.scope.startswith("lease:") else None


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _secret() -> bytes:
    return local_secret("provider-tokens")


def checksum_address(wallet: str) -> str:
    """The EIP-55 form of an address; AuthError for something that is not one."""
    from eth_utils import is_address, to_checksum_address

    if not isinstance(wallet, str) or not is_address(wallet):
        raise AuthError(f"{wallet!r} is not an Ethereum address (0x followed by 40 hex digits)")
    return to_checksum_address(wallet)


def challenge_message(coordinator: str, wallet: str, nonce: str, issued: int) -> str:
    """The text a provider's wallet signs to sign in (EIP-4361-like, so a wallet shows what it signs)."""
    expires = issued + CHALLENGE_SECONDS
    iso = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(issued))
    until = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(expires))
    return (
        f"{coordinator} wants you to sign in with your Ethereum account:\n{wallet}\n\n"
        "Sign in as a compute provider of Easy AI Builder.\n\n"
        f"URI: {coordinator}\nVersion: 1\nNonce: {nonce}\nIssued At: {iso}\nExpiration Time: {until}"
    )


def new_nonce() -> str:
    """A fresh random challenge nonce."""
    return secrets.token_hex(16)


def recover_signer(message: str, signature: str) -> str:
    """The address that signed `message` (EIP-191 personal_sign); AuthError when the signature is malformed."""
    from eth_account import Account
    from eth_account.messages import encode_defunct

    try:
        return Account.recover_message(encode_defunct(text=message), signature=signature)
    except Exception as exc:  # malformed hex, wrong length, invalid curve point …
        raise AuthError(f"the signature cannot be read ({type(exc).__name__})") from None


def sign_message(message: str, private_key: bytes | str) -> str:
    """Provider side: the EIP-191 signature of `message` by `private_key`, as 0x-hex."""
    from eth_account import Account
    from eth_account.messages import encode_defunct

    return "0x" + Account.sign_message(
        encode_defunct(text=message), private_key=private_key
    ).signature.hex().removeprefix("0x")


def mint_token(wallet: str, scope: str, seconds: float, now: float | None = None) -> tuple[str, int]:
    """A bearer token for `wallet` with `scope`, valid `seconds` from now; (token, expiry as unix time)."""
    expires = int((now if now is not None else time.time()) + seconds)
    payload = _b64(json.dumps({"w": wallet, "s": scope, "e": expires, "j": _b64(os.urandom(12))},
                              separators=(",", ":")).encode())  # fmt: skip
    mac = hmac.new(_secret(), payload.encode(), hashlib.sha256).digest()
    return f"{payload}.{_b64(mac)}", expires


def read_token(token: str, now: float | None = None) -> Claims:
    """The claims of a token this coordinator minted that has not expired; AuthError otherwise."""
    try:
        payload, mac = token.split(".")
        good = hmac.compare_digest(_unb64(mac), hmac.new(_secret(), payload.encode(), hashlib.sha256).digest())
    except (ValueError, TypeError):
        raise AuthError("the bearer token is malformed; sign in again") from None
    if not good:
        raise AuthError("the bearer token was not issued by this coordinator; sign in again")
    data = json.loads(_unb64(payload))
    if data["e"] <= (now if now is not None else time.time()):
        raise AuthError("the bearer token has expired; sign in again")
    return Claims(wallet=data["w"], scope=data["s"], expires=int(data["e"]), token_id=data["j"])


CHALLENGE_LIFETIME = timedelta(seconds=CHALLENGE_SECONDS)

__all__ = [
    "AuthError",
    "Claims",
    "challenge_message",
    "checksum_address",
    "mint_token",
    "new_nonce",
    "read_token",
    "recover_signer",
    "sign_message",
]
