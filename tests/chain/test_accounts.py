"""Encrypted keystore accounts: created 0600 and never overwritten, opened only by their password, used to
sign transactions the node cannot sign itself; the private key never appears in any output."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys

import pytest
from web3 import Web3

from builder.errors import ChainError
from chain.accounts import create_keystore, load_account, use_signer
from chain.client import send

PASSWORD = "correct horse battery"


def private_key_hex(path, password=PASSWORD) -> str:
    from eth_account import Account

    return Account.decrypt(json.loads(path.read_text()), password).hex().removeprefix("0x")


def test_a_keystore_is_created_private_never_overwritten_and_opened_only_by_its_password(tmp_path):
    path = tmp_path / "keys" / "me.json"
    address = create_keystore(path, PASSWORD)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert load_account(path, PASSWORD).address == address
    key = private_key_hex(path)
    assert key not in path.read_text()  # stored encrypted
    with pytest.raises(ChainError, match=r"exists already; a keystore is never overwritten"):
        create_keystore(path, PASSWORD)
    assert load_account(path, PASSWORD).address == address
    with pytest.raises(ChainError) as wrong:
        load_account(path, "wrong password!")
    assert str(wrong.value) == f"the password does not open the keystore {path}" and key not in str(wrong.value)
    with pytest.raises(ChainError, match="at least 8 characters"):
        create_keystore(tmp_path / "short.json", "short")
    assert not (tmp_path / "short.json").exists()


def test_unreadable_keystores_get_one_sentence(tmp_path):
    with pytest.raises(ChainError, match="there is no keystore file at"):
        load_account(tmp_path / "missing.json", PASSWORD)
    (tmp_path / "junk.json").write_text("not json")
    with pytest.raises(ChainError, match=r"is not a keystore file \(encrypted JSON\)"):
        load_account(tmp_path / "junk.json", PASSWORD)
    (tmp_path / "plain.json").write_text('{"address": "00"}')
    with pytest.raises(ChainError, match="no 'crypto' section"):
        load_account(tmp_path / "plain.json", PASSWORD)


def test_a_keystore_account_signs_what_the_node_cannot(chain, tmp_path, monkeypatch):
    path = tmp_path / "payer.json"
    address = create_keystore(path, PASSWORD)
    assert address not in chain.w3.eth.accounts  # the node does not hold this key
    (tmp_path / "pw").write_text(PASSWORD + "\n")
    (tmp_path / "pw").chmod(0o600)  # a password file must be private
    monkeypatch.setenv("AIB_KEYSTORE", str(path))
    monkeypatch.setenv("AIB_KEYSTORE_PASSWORD_FILE", str(tmp_path / "pw"))
    w3 = Web3(chain.w3.provider)  # its own middleware stack over the same in-process chain
    token = w3.eth.contract(address=chain.token.address, abi=chain.token.abi)
    w3.eth.send_transaction({"from": chain.roles.admin, "to": address, "value": 10**18})  # gas money
    send(w3, token.functions.transfer(address, 5 * 10**18), chain.roles.investors)
    assert use_signer(w3, {"roles": {"operator": chain.roles.admin}}) == address
    receipt = send(w3, token.functions.transfer(chain.roles.stranger, 2 * 10**18), address)
    assert receipt.status == 1 and w3.eth.get_transaction(receipt.transactionHash)["from"] == address
    assert token.functions.balanceOf(chain.roles.stranger).call() == 2 * 10**18
    assert token.functions.balanceOf(address).call() == 3 * 10**18


def aib(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "builder.cli", *args],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, **env},
        stdin=subprocess.DEVNULL,
    )


def test_wallet_create_and_address_from_the_cli_never_print_the_key(tmp_path):
    (tmp_path / "pw").write_text(PASSWORD)
    (tmp_path / "pw").chmod(0o600)  # a password file must be private
    path = tmp_path / "cli.json"
    env = {"AIB_KEYSTORE_PASSWORD_FILE": str(tmp_path / "pw")}
    created = aib("wallet", "create", str(path), env=env)
    assert created.returncode == 0, created.stderr
    address = load_account(path, PASSWORD).address
    assert f"created {address} in {path}" in created.stdout
    shown = aib("wallet", "address", "--json", env={**env, "AIB_KEYSTORE": str(path)})
    assert json.loads(shown.stdout) == {"address": address, "source": f"keystore {path}"}
    key = private_key_hex(path)
    again = aib("wallet", "create", str(path), env=env)
    assert again.returncode == 2 and "is never overwritten" in again.stderr
    no_password = aib("wallet", "address", env={"AIB_KEYSTORE": str(path), "AIB_KEYSTORE_PASSWORD_FILE": ""})
    assert no_password.returncode == 2 and "set AIB_KEYSTORE_PASSWORD_FILE" in no_password.stderr
    (tmp_path / "bad").write_text("not the password")
    (tmp_path / "bad").chmod(0o600)  # a password file must be private
    wrong = aib(
        "wallet", "address", env={"AIB_KEYSTORE": str(path), "AIB_KEYSTORE_PASSWORD_FILE": str(tmp_path / "bad")}
    )
    assert wrong.returncode == 2 and wrong.stderr.strip() == f"error: the password does not open the keystore {path}"
    for r in (created, shown, again, no_password, wrong):
        assert key not in r.stdout + r.stderr and "Traceback" not in r.stderr


def test_the_address_book_of_another_network_comes_from_aib_address_book(tmp_path, monkeypatch):
    from runtime.chain_node import address_book, write_address_book

    path = tmp_path / "sepolia.json"
    monkeypatch.setenv("AIB_ADDRESS_BOOK", str(path))
    with pytest.raises(ChainError, match=f"there is no address book at {path} \\(AIB_ADDRESS_BOOK\\)"):
        address_book()
    path.write_text("{not json")
    with pytest.raises(ChainError, match="is not readable JSON"):
        address_book()
    write_address_book({"contracts": {"AICToken": "0x" + "11" * 20}, "roles": {"operator": "0x" + "22" * 20}})
    assert address_book()["contracts"]["AICToken"] == "0x" + "11" * 20
