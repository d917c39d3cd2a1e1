"""AICToken: the capped supply is minted once, to the white paper's allocation."""

import pytest

from chain.artifacts import load_artifact
from tests.chain.conftest import deploy, reverts

CAP = 10_000_000_000 * 10**18
ZERO = "0x" + "0" * 40


def test_metadata_and_cap(chain):
    t = chain.token.functions
    assert (t.name().call(), t.symbol().call(), t.decimals().call()) == ("AI Crypto", "AIC", 18)
    assert t.cap().call() == t.totalSupply().call() == t.CAP().call() == CAP


@pytest.mark.parametrize(
    ("role", "percent"),
    [
        ("investors", 30),
        ("team", 25),
        ("ecosystem", 20),
        ("marketing", 15),
        ("advisors", 5),
        ("company", 5),
    ],
)
def test_allocation_follows_the_white_paper(chain, role, percent):
    assert chain.token.functions.balanceOf(getattr(chain.roles, role)).call() == CAP * percent // 100


def test_allocated_events_sum_to_the_cap(chain):
    events = chain.token.events.Allocated.get_logs(from_block=0)
    assert [e.args.role for e in events] == ["investors", "team", "ecosystem", "marketing", "advisors", "company"]
    assert sum(e.args.amount for e in events) == CAP


def test_nothing_can_mint_after_deployment(chain):
    functions = {e["name"] for e in load_artifact("AICToken")["abi"] if e["type"] == "function"}
    assert not {f for f in functions if "mint" in f.lower()}


def test_zero_allocation_address_is_refused(chain):
    r = chain.roles
    error = reverts(
        lambda: deploy(
            chain.w3, load_artifact("AICToken"), r.investors, ZERO, r.ecosystem, r.marketing, r.advisors, r.company
        )
    )
    assert "team" in error  # AICTokenZeroAddress("team")


def test_transfer_beyond_balance_reverts_with_the_erc20_error(chain):
    transfer = chain.token.functions.transfer(chain.roles.team, 1)
    error = reverts(lambda: transfer.transact({"from": chain.roles.stranger}))
    assert error.startswith("ERC20InsufficientBalance(")
