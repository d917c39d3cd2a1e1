"""Proof-of-Value epochs on a real Anvil: a paid run's assets are rewarded in one transaction, owners claim once,
a re-uploaded (duplicate) dataset is left out, and a crash after closeEpoch is reconciled without paying twice."""

from __future__ import annotations

import hashlib
import json

import pytest
import yaml
from web3.logs import DISCARD

from tests.conftest import TEMPLATES
from tests.integration.conftest import aib

AIC = 10**18


def _rc():
    from runtime.rewards import RewardsChain

    return RewardsChain.connect()


def _balance(rc, who: str) -> int:
    return rc.token.functions.balanceOf(who).call()


def _publish_copy(tmp_path, extra_row: str) -> dict:
    """Publish a FAQ file no other test published (one extra row), and run the chatbot template on it, paid."""
    faq = (TEMPLATES / "data" / "faq.csv").read_text().rstrip("\n") + "\n" + extra_row + "\n"
    path = tmp_path / "faq-copy.csv"
    path.write_text(faq)
    return {"path": path, "sha256": hashlib.sha256(path.read_bytes()).digest()}


def _template_faq(tmp_path) -> str:
    """The template's FAQ copied beside the test's pipeline (a pipeline reads data only from its own folder)."""
    (tmp_path / "data").mkdir(exist_ok=True)
    (tmp_path / "data" / "faq.csv").write_bytes((TEMPLATES / "data" / "faq.csv").read_bytes())
    return "data/faq.csv"


def _run_on(tmp_path, dataset_path: str) -> dict:
    data = yaml.safe_load((TEMPLATES / "faq-chatbot-fast.yaml").read_text())
    data["blocks"]["faq"]["params"] = {"path": dataset_path}
    pipeline = tmp_path / "rewards-run.yaml"
    pipeline.write_text(yaml.safe_dump(data, sort_keys=False))
    r = aib("run", str(pipeline), "--json")
    assert r.returncode == 0, r.stderr
    summary = json.loads(r.stdout.strip().splitlines()[-1])
    assert summary["settlement"]["status"] == "settled"
    return summary


def test_an_epoch_rewards_used_assets_in_one_transaction_leaves_a_duplicate_out_and_pays_each_owner_once(
    paid_chain, tmp_path
):
    from runtime.rewards import report_hash

    rc = _rc()
    # Somebody registered these exact bytes before they were published here: the published copy is a duplicate.
    copy = _publish_copy(tmp_path, "order_status,Is my parcel on its way to the moon?,")
    first = rc.send(rc.registry.functions.register(rc.operator, 0, copy["sha256"], "elsewhere", 1))
    original = rc.registry.events.AssetRegistered().process_receipt(first, errors=DISCARD)[0].args.assetId
    owner = rc.w3.to_checksum_address("0x00000000000000000000000000000000c0ffee01")
    r = aib("datasets", "publish", str(copy["path"]), "--block", "chat.faq-csv", "--price", "0.002 AIC",
            "--owner", owner, "--name", "copied FAQ", "--json")  # fmt: skip
    assert r.returncode == 0, r.stderr
    ds = json.loads(r.stdout)
    summary = _run_on(tmp_path, ds["path"])
    paid_refs = {p["block_ref"]: p for p in summary["settlement"]["payouts"]}
    assert ds["ref"] in paid_refs and "chat.intent-classifier@1.0.0" in paid_refs
    assert summary["metrics"]["accuracy"] > summary["metrics"]["baseline_accuracy"]  # so the data is not junk

    shown = aib("rewards", "show", "--json")
    assert shown.returncode == 0, shown.stderr
    preview = json.loads(shown.stdout)["next"]
    excluded = {e["asset_id"]: e["reason"] for e in preview["excluded"]}
    assert excluded[ds["asset_id"]] == f"a duplicate of asset {original} (the same content hash)"
    # Nothing this run used honestly is left out (other tests' settled usage, e.g. a caught provider, may be).
    used = {p["asset_id"] for p in summary["settlement"]["payouts"]}
    assert set(excluded) & used == {ds["asset_id"]}

    pool_before = _balance(rc, rc.pool)
    count_before = rc.rewards.functions.epochCount().call()
    r = aib("rewards", "close-epoch", "--amount", "1000", "--json")
    assert r.returncode == 0, r.stderr
    closed = json.loads(r.stdout)
    report = closed["report"]
    number = closed["epoch"]
    assert number == count_before + 1 and closed["status"] == "closed" and closed["close_tx"].startswith("0x")
    total = int(closed["total_wei"])
    assert 1000 * AIC - len(report["paid"]) < total <= 1000 * AIC  # rounding down loses < 1 wei per asset
    assert _balance(rc, rc.pool) == pool_before - total  # one pull from the pool
    on_chain = rc.rewards.functions.epochOf(number).call()
    assert on_chain[0].hex() == report["root"][2:] and on_chain[1] == report_hash(report) and on_chain[2] == total
    paid = {leaf["asset_id"]: leaf for leaf in report["paid"]}
    assert ds["asset_id"] not in paid and summary["run_id"] in report["settlements"]
    values = {a: int(leaf["value_wei"]) for a, leaf in paid.items()}
    for a, leaf in paid.items():  # pro rata to what each asset was paid
        assert int(leaf["amount_wei"]) == 1000 * AIC * values[a] // sum(values.values())
    owners = {a: rc.registry.functions.ownerOf(a).call() for a in paid}
    before = {o: _balance(rc, o) for o in set(owners.values())}

    r = aib("rewards", "claim", "--epoch", str(number), "--json")
    assert r.returncode == 0, r.stderr
    assert {c["asset_id"]: c["outcome"] for c in json.loads(r.stdout)} == {a: "paid" for a in paid}
    gained: dict[str, int] = {}
    for a, o in owners.items():
        gained[o] = gained.get(o, 0) + int(paid[a]["amount_wei"])
    assert {o: _balance(rc, o) - before[o] for o in before} == gained
    again = aib("rewards", "claim", "--epoch", str(number), "--json")
    assert {c["outcome"] for c in json.loads(again.stdout)} == {"claimed already"}
    assert {o: _balance(rc, o) - before[o] for o in before} == gained  # nothing paid twice

    shown = json.loads(aib("rewards", "show", "--epoch", str(number), "--json").stdout)
    assert all(c["claimed"] for c in shown["claims"])
    assert ds["asset_id"] in {e["asset_id"] for e in shown["report"]["excluded"]}
    nothing = aib("rewards", "close-epoch")
    assert nothing.returncode == 0 and "nothing to reward" in nothing.stdout, nothing.stdout + nothing.stderr
    assert rc.rewards.functions.epochCount().call() == number
    missing = aib("rewards", "show", "--epoch", "99")
    assert missing.returncode == 2 and "there is no rewards epoch 99" in missing.stderr
    assert "Traceback" not in missing.stderr
    bad = aib("rewards", "close-epoch", "--amount", "lots")
    assert bad.returncode == 2 and "--amount" in bad.stderr and "Traceback" not in bad.stderr


def test_a_crash_after_close_epoch_was_sent_is_reconciled_without_paying_twice(paid_chain, tmp_path, monkeypatch):
    from builder.errors import ChainError
    from runtime import rewards
    from runtime.db import RewardEpoch, session_factory

    _run_on(tmp_path, _template_faq(tmp_path))  # fresh settled usage to reward
    rc = _rc()
    real_send = rc.send

    def send_then_die(call, sender=None):
        real_send(call, sender)
        raise ChainError("no receipt (the node went away after the transaction was sent)")

    monkeypatch.setattr(rc, "send", send_then_die)
    pool_before = _balance(rc, rc.pool)
    with pytest.raises(ChainError), session_factory()() as s:
        rewards.close_epoch(s, rc, 10 * AIC)
    monkeypatch.undo()
    with session_factory()() as s:
        row = s.query(RewardEpoch).filter_by(status="pending").one()
        number, total = row.number, row.total_wei
    assert rc.rewards.functions.epochCount().call() == number  # on chain it is closed; locally still pending
    paid_once = _balance(rc, rc.pool)
    assert paid_once == pool_before - total

    r = aib("rewards", "close-epoch", "--json")
    assert r.returncode == 0, r.stderr
    done = json.loads(r.stdout)
    assert done["epoch"] == number and done["status"] == "closed" and done["close_tx"].startswith("0x")
    assert _balance(rc, rc.pool) == paid_once  # reconciled from the chain: not pulled twice
    assert rc.rewards.functions.epochCount().call() == number


def test_the_wallet_page_previews_closes_and_pays_an_epoch(paid_chain, tmp_path, monkeypatch):
    from tests.integration.test_ui_pages import click, page, texts

    monkeypatch.setenv("AIB_OPERATOR", "1")  # the workbench of the operator (builder/ui/operator.py)
    _run_on(tmp_path, _template_faq(tmp_path))  # settled usage for the next epoch
    rc = _rc()
    number = rc.rewards.functions.epochCount().call() + 1
    at = page("wallet")
    assert "Proof-of-Value rewards" in texts(at.subheader)
    assert any(f"Next epoch ({number})" in m for m in texts(at.markdown))
    preview = at.dataframe[-1].value
    assert "chat.intent-classifier@1.0.0" in set(preview["block / dataset / offer"])
    at.number_input(key="epoch-aic").set_value(500).run()
    click(at, "close-epoch")
    assert [m for m in texts(at.success) if m.startswith(f"Epoch {number} closed: ")], texts(at.error)
    assert rc.rewards.functions.epochCount().call() == number
    assert int(rc.rewards.functions.epochOf(number).call()[2]) <= 500 * AIC
    click(at, "claim-epoch")
    assert [m for m in texts(at.success) if m.startswith(f"Epoch {number}: paid ")], texts(at.error)
    with_claims = json.loads(aib("rewards", "show", "--epoch", str(number), "--json").stdout)["claims"]
    assert with_claims and all(c["claimed"] for c in with_claims)
