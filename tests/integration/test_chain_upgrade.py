"""An embedded chain deployed by an older build keeps working after an upgrade of the escrow and rewards contracts."""

from __future__ import annotations

import json

from tests.conftest import TEMPLATES
from tests.integration.conftest import aib

UPGRADED = ("RunEscrow", "ContributionRewards")


def test_a_chain_with_contracts_of_an_older_build_gets_new_ones_once_and_pays_through_them(paid_chain):
    from chain.deploy import artifact_hash
    from runtime.chain_node import address_book, ensure_deployed, rpc_url, write_address_book
    from runtime.settlement import Chain

    book = address_book()
    old = dict(book["contracts"])
    del book["builds"]  # as a book written before the contracts' builds were recorded
    write_address_book(book)
    upgraded = ensure_deployed(rpc_url())
    assert all(upgraded["contracts"][n] != old[n] for n in UPGRADED)
    assert upgraded["retired"] == {n: [old[n]] for n in UPGRADED}
    assert upgraded["builds"] == {n: artifact_hash(n) for n in UPGRADED}
    kept = ("AICToken", "AssetRegistry")
    assert {k: upgraded["contracts"][k] for k in kept} == {k: old[k] for k in kept}  # their assets and balances stay
    assert upgraded["assets"] == book["assets"]
    assert ensure_deployed(rpc_url())["contracts"] == upgraded["contracts"]  # once

    r = aib("run", str(TEMPLATES / "faq-chatbot-fast.yaml"), "--json", "--set", "classifier.epochs=1")
    assert r.returncode == 0, r.stderr
    run_id = json.loads(r.stdout.strip().splitlines()[-1])["run_id"]
    chain = Chain.connect()
    assert chain.escrow.address == upgraded["contracts"]["RunEscrow"]
    entry = chain.escrow.functions.depositOf(chain.payer, chain.onchain_id(run_id)).call()
    payer, _at, closed, _fee_bps, _amount = entry
    assert payer == chain.payer and closed  # deposited into and settled by the new escrow
