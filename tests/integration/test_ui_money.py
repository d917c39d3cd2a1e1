"""Money and plumbing in plain words on the workbench (issue 22, item 6): amounts in AIC, never wei; names instead
of addresses, the raw address or transaction only inside a "Details" expander; epochs closed by the operator alone.

Each page runs in AppTest on a real Anvil after a real paid run, with a published dataset and a compute offer.
"""

from __future__ import annotations

import re

import pytest
from streamlit.testing.v1.element_tree import Block, Dataframe, Expander
from web3 import Web3

from tests.conftest import TEMPLATES
from tests.integration.test_rewards import _run_on, _template_faq
from tests.integration.test_ui_pages import page

WEI = re.compile(r"\bwei\b", re.IGNORECASE)
RAW = re.compile(r"0x[0-9a-fA-F]{40}")  # an address, or the start of a transaction hash
STRANGER = "0x" + "cd" * 20  # a wallet nobody has named


def shown(node, in_details: bool = False) -> list[tuple[str, bool]]:
    """Every text of a page (labels, values, help, table cells) with whether it lies in a Details expander."""
    if isinstance(node, Block):
        inside = in_details or (isinstance(node, Expander) and node.label == "Details")
        return [t for child in node.children.values() for t in shown(child, inside)]
    if isinstance(node, Dataframe):
        return [(node.value.to_string(), in_details)]
    return [(str(node.proto), in_details)]


def plain(at) -> tuple[str, str]:
    """(the text of the page outside Details expanders, the text inside them)."""
    texts = shown(at.main) + shown(at.sidebar)
    return "\n".join(t for t, d in texts if not d), "\n".join(t for t, d in texts if d)


@pytest.fixture(scope="module")
def market(paid_chain, tmp_path_factory):
    """A paid run (settled usage for the next epoch), datasets published on chain (yours, a stranger's) and an offer."""
    from runtime.datasets import publish
    from runtime.db import session_factory
    from runtime.providers import Hardware, register_offer

    tmp = tmp_path_factory.mktemp("money")
    _run_on(tmp, _template_faq(tmp))
    faq = (TEMPLATES / "data" / "faq.csv").read_bytes() + b"order_status,Can I pay my order in AIC?,\n"
    for name, owner, extra in [
        ("Money FAQ", paid_chain.payer, b""),
        ("Stranger FAQ", STRANGER, b"order_status,And in AIC?,\n"),
    ]:
        file = f"{name.split()[0].lower()}.csv"
        publish(file, faq + extra, block="chat.faq-csv@1.0.0", price_wei=3 * 10**15, owner=owner, name=name)
    with session_factory()() as s:
        offer = register_offer(s, name="money-rig", tier="cpu", price_wei_per_s=10**14, hardware=Hardware((), 4, 8.0))
        offer.wallet = "0x" + "ab" * 20  # named by its offer
        s.commit()


def test_amounts_too_small_for_six_decimals_are_still_shown_in_aic():
    from builder.ui.common import aic

    assert aic(10_297_722_000) == "0.0000000103 AIC"  # was "10297722000 wei"
    assert aic(5 * 10**11) == "0.0000005 AIC"
    assert aic(10_000 * 10**18) == "10,000 AIC"
    assert aic(2 * 10**15) == "0.002 AIC"
    assert aic(0) == "0 AIC" and aic(None) == "—"


@pytest.mark.parametrize("name", ["wallet", "provide", "marketplace"])
def test_money_pages_show_aic_and_names_never_wei_or_raw_addresses(market, paid_chain, name):
    at = page(name)
    outside, inside = plain(at)
    assert not WEI.search(outside), WEI.search(outside)
    assert not RAW.findall(outside), RAW.findall(outside)
    assert "AIC" in outside
    assert RAW.search(inside)  # the addresses and transactions are still there, one click away


def test_names_replace_addresses_where_something_has_a_name(market, paid_chain):
    import blocks

    wallet = page("wallet")
    received = next(d.value for d in wallet.dataframe if "provider" in d.value.columns)
    # Other tests of the session move assets to new owners, so the names expected are those of the publishers
    # that settlements really paid (at least this module's run paid the models' publisher).
    from sqlalchemy import select

    from runtime.db import Settlement, session_factory

    with session_factory()() as s:
        settled = s.scalars(select(Settlement).where(Settlement.status == "settled"))
        paid = {p["payee"].lower() for row in settled for p in (row.payouts or []) if p.get("payee")}
    publishers = {blocks.DATA_PROVIDER: "Easy AI Builder data", blocks.MODEL_PROVIDER: "Easy AI Builder models"}
    expected = {name for address, name in publishers.items() if address.lower() in paid}
    assert "Easy AI Builder models" in expected and expected <= set(received["provider"]), set(received["provider"])
    assert not any(re.search(r"0x[0-9a-fA-F]{40}", str(v)) for v in received["provider"])  # only names, short forms
    assert blocks.MODEL_PROVIDER in plain(wallet)[1]  # behind the name, in Details
    provide = page("provide")
    offers = next(d.value for d in provide.dataframe if "tier" in d.value.columns)  # hosts and stores follow it
    assert list(offers[offers["name"] == "money-rig"]["owner (paid)"]) == ["money-rig (compute provider)"]
    datasets = next(d.value for d in provide.dataframe if "owner (paid)" in d.value.columns and "runs" in d.value)
    assert list(datasets[datasets["name"] == "Money FAQ"]["owner (paid)"]) == ["You"]
    stranger = Web3.to_checksum_address(STRANGER)
    assert list(datasets[datasets["name"] == "Stranger FAQ"]["owner (paid)"]) == [f"{stranger[:6]}…{stranger[-4:]}"]


def test_only_the_operator_is_offered_and_allowed_to_close_an_epoch(market, paid_chain, monkeypatch):
    from builder.ui.operator import NOT_OPERATOR, close_epoch
    from runtime.rewards import RewardsChain

    rc = RewardsChain.connect()
    before = rc.rewards.functions.epochCount().call()
    monkeypatch.delenv("AIB_OPERATOR", raising=False)
    at = page("wallet")
    assert "close-epoch" not in [b.key for b in at.button]
    assert not [n for n in at.number_input if n.key == "epoch-aic"]
    assert any(m.label == "Your balance" for m in at.metric)
    assert any("Next epoch" in m for m in [x.value for x in at.markdown])  # the preview is still shown
    assert close_epoch(rc, 500 * 10**18) == ("error", NOT_OPERATOR, {})  # refused in the server, not only hidden
    assert rc.rewards.functions.epochCount().call() == before
    monkeypatch.setenv("AIB_OPERATOR", "1")
    at = page("wallet")
    assert not at.button(key="close-epoch").disabled  # there is settled usage to reward
