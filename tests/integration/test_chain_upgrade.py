"""An embedded chain deployed by an older build keeps working after an upgrade of the escrow contract."""

from __future__ import annotations

import json

from tests.conftest import TEMPLATES
from tests.integration.conftest import aib


def test_a_chain_with_an_escrow_of_an_older_build_gets_a_new_one_once_and_pays_through_it(paid_chain):
    from chain.deploy import artifact_hash
    from runtime.chain_node import address_book, ensure_deployed, rpc_url, write_address_book
    from runtime.settlement import Chain

    book = address_book()
    old = book["contracts"]["RunEscrow"]
    del book["escrow_build"]  # as a book written before the escrow's build was recorded
    write_address_book(book)
    upgraded = ensure_deployed(rpc_url())
    new = upgraded["contracts"]["RunEscrow"]
    assert (
        new != old and upgraded["retired_escrows"] == [old] and upgraded["escrow_build"] == artifact_hash("RunEscrow")
    )
    assert {k: v for k, v in upgraded["contracts"].items() if k != "RunEscrow"} == {
        k: v for k, v in book["contracts"].items() if k != "RunEscrow"
    }  # the token, the registry and their assets stay
    assert upgraded["assets"] == book["assets"]
    assert ensure_deployed(rpc_url())["contracts"]["RunEscrow"] == new  # once

    r = aib("run", str(TEMPLATES / "faq-chatbot.yaml"), "--json", "--set", "classifier.epochs=1")
    assert r.returncode == 0, r.stderr
    run_id = json.loads(r.stdout.strip().splitlines()[-1])["run_id"]
    chain = Chain.connect()
    assert chain.escrow.address == new
    payer, _at, closed, _fee_bps, _amount = chain.escrow.functions.depositOf(
        chain.payer, chain.onchain_id(run_id)
    ).call()
    assert payer == chain.payer and closed  # deposited into and settled by the new escrow
