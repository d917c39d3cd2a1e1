"""The wallet that signs: the node's dev accounts on the local chain, an encrypted keystore file elsewhere.

`AIB_KEYSTORE` names an eth-account keystore (scrypt-encrypted JSON, as geth and MetaMask export them);
its password comes from the file named by `AIB_KEYSTORE_PASSWORD_FILE`, or is asked for on a terminal.
Transactions are then signed here and sent raw, so the node never holds the key. The private key is never
printed, logged, or put in an error message.
"""

from __future__ import annotations

import getpass
import json
import os
import sys
from pathlib import Path
from typing import Any

from builder.errors import ChainError


def keystore_path() -> Path | None:
    """The keystore file named by AIB_KEYSTORE, if any."""
    value = os.environ.get("AIB_KEYSTORE")
    return Path(value).expanduser() if value else None


def read_password(prompt: str, confirm: bool = False) -> str:
    """The keystore password: from AIB_KEYSTORE_PASSWORD_FILE, else asked on the terminal (twice if `confirm`)."""
    source = os.environ.get("AIB_KEYSTORE_PASSWORD_FILE")
    if source:
        path = Path(source).expanduser()
        try:
            mode = path.stat().st_mode & 0o777
            password = path.read_text(encoding="utf-8").rstrip("\r\n")
        except (OSError, UnicodeDecodeError) as exc:
            raise ChainError(f"cannot read the password file {source} ({type(exc).__name__})") from None
        if mode & 0o044:  # a password others can read protects nothing; refuse rather than use it
            raise ChainError(
                f"the password file {source} can be read by other users (mode {mode:04o}); make it private: "
                f"chmod 600 {source}"
            )
        return password
    if not sys.stdin.isatty():
        raise ChainError(
            f"{prompt} is needed: set AIB_KEYSTORE_PASSWORD_FILE to a file holding it, or run on a terminal"
        )
    password = getpass.getpass(f"{prompt}: ")
    if confirm and getpass.getpass("repeat it: ") != password:
        raise ChainError("the two passwords differ; nothing was written")
    return password


def load_account(path: Path, password: str | None = None) -> Any:
    """The LocalAccount in the keystore at `path`; ChainError (one sentence, no secret) when it cannot open."""
    from eth_account import Account

    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ChainError(f"there is no keystore file at {path}") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        raise ChainError(f"{path} is not a keystore file (encrypted JSON)") from None
    if not isinstance(data, dict) or "crypto" not in {k.lower() for k in data}:
        raise ChainError(f"{path} is not a keystore file (no 'crypto' section)")
    if password is None:
        password = read_password(f"the password of the keystore {path}")
    try:
        key = Account.decrypt(data, password)
    except ValueError:
        raise ChainError(f"the password does not open the keystore {path}") from None
    return Account.from_key(key)


def create_keystore(path: Path, password: str) -> str:
    """Write a new account, encrypted with `password`, to `path` (never overwritten, mode 0600); its address."""
    from eth_account import Account

    if len(password) < 8:
        raise ChainError("choose a keystore password of at least 8 characters")
    account = Account.create()
    data = json.dumps(Account.encrypt(account.key, password)).encode()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise ChainError(f"{path} exists already; a keystore is never overwritten") from None
    except OSError as exc:
        raise ChainError(f"cannot write the keystore {path} ({exc.strerror})") from None
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    return account.address


def use_signer(w3: Any, book: dict[str, Any]) -> str:
    """The address transactions are sent from: the AIB_KEYSTORE account (signed locally) or the local operator."""
    path = keystore_path()
    if path is None:
        return book["roles"]["operator"]
    from web3.middleware import SignAndSendRawMiddlewareBuilder

    account = load_account(path)
    w3.middleware_onion.inject(SignAndSendRawMiddlewareBuilder.build(account), name="aib_signer", layer=0)
    return account.address


__all__ = ["create_keystore", "keystore_path", "load_account", "read_password", "use_signer"]
