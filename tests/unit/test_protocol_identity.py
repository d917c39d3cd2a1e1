"""Provider identity: wallet-signed challenges and the coordinator's short-lived, scoped bearer tokens."""

from __future__ import annotations

import time

import pytest
from eth_account import Account

from runtime.protocol.identity import (
    AuthError,
    challenge_message,
    checksum_address,
    mint_token,
    read_token,
    recover_signer,
    sign_message,
)


def test_a_signed_challenge_recovers_the_wallet_that_signed_it_and_no_other():
    me, other = Account.create(), Account.create()
    message = challenge_message("http://10.0.0.1:4201", me.address, "ab" * 16, int(time.time()))
    assert recover_signer(message, sign_message(message, me.key)) == me.address
    assert recover_signer(message, sign_message(message, other.key)) == other.address  # the route compares this
    altered = message.replace("Nonce: ", "Nonce: 0")
    assert recover_signer(altered, sign_message(message, me.key)) != me.address


def test_a_malformed_signature_is_one_sentence_not_a_traceback():
    with pytest.raises(AuthError, match="the signature cannot be read"):
        recover_signer("hello", "0x1234")


def test_a_token_carries_its_wallet_and_scope_until_it_expires():
    token, expires = mint_token("0xabc", "lease:lease-1", 60, now=1000.0)
    claims = read_token(token, now=1030.0)
    assert (claims.wallet, claims.scope, claims.lease_id, claims.expires) == ("0xabc", "lease:lease-1", "lease-1", 1060)
    with pytest.raises(AuthError, match="has expired"):
        read_token(token, now=1060.0)


def test_a_token_changed_in_any_way_is_refused():
    token, _ = mint_token("0xabc", "wallet", 60)
    payload, mac = token.split(".")
    import base64
    import json

    data = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    data["s"] = "lease:someone-elses"  # widen the scope, keep the signature
    forged = base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode() + "." + mac
    with pytest.raises(AuthError, match="not issued by this coordinator"):
        read_token(forged)
    with pytest.raises(AuthError, match="malformed"):
        read_token("not-a-token")
    with pytest.raises(AuthError, match="malformed"):
        read_token(token + ".x")


def test_addresses_are_checked_and_normalised():
    acct = Account.create()
    assert checksum_address(acct.address.lower()) == acct.address
    with pytest.raises(AuthError, match="is not an Ethereum address"):
        checksum_address("0x123")
