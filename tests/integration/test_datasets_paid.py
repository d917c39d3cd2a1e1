"""A published dataset on a real Anvil: its asset NFT is minted once, and a run reading it pays its owner."""

from __future__ import annotations

import dataclasses
import json

import yaml

from runtime.datasets import publish, register_asset
from tests.conftest import TEMPLATES
from tests.integration.conftest import aib

FAQ = (TEMPLATES / "data" / "faq.csv").read_bytes()
PRICE = 3 * 10**15


def test_a_run_reading_a_published_dataset_pays_its_owner_through_the_escrow(paid_chain, tmp_path):
    from chain.client import contract
    from runtime.chain_node import address_book

    registry = contract(paid_chain.w3, "AssetRegistry", address_book())
    owner = paid_chain.w3.to_checksum_address("0x00000000000000000000000000000000da7a5e11")  # only this dataset pays it
    minted = registry.functions.totalAssets().call()
    r = aib(
        "datasets", "publish", str(TEMPLATES / "data" / "faq.csv"), "--block", "chat.faq-csv",
        "--price", "0.003 AIC", "--owner", owner, "--name", "Shop FAQ", "--json",
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    ds = json.loads(r.stdout)
    assert ds["asset_id"] is not None and registry.functions.ownerOf(ds["asset_id"]).call() == owner
    record = registry.functions.assetOf(ds["asset_id"]).call()
    assert record[1].hex() == ds["sha256"] and record[2] == PRICE
    assert address_book()["assets"][ds["ref"]] == ds["asset_id"]
    assert registry.functions.totalAssets().call() == minted + 1

    # A publish that crashed after minting is finished by adopting the minted asset, not by minting again.
    again = register_asset(dataclasses.replace(publish("x.csv", FAQ, block="chat.faq-csv", price_wei=PRICE,
                                                       owner=owner, register=False), asset_id=None))  # fmt: skip
    assert again.asset_id == ds["asset_id"] and registry.functions.totalAssets().call() == minted + 1
    listed = json.loads(aib("datasets", "list", "--json").stdout)
    assert [d["asset_id"] for d in listed if d["id"] == ds["id"]] == [ds["asset_id"]]

    data = yaml.safe_load((TEMPLATES / "faq-chatbot-fast.yaml").read_text())
    data["blocks"]["faq"]["params"] = {"path": ds["path"]}
    pipeline = tmp_path / "uses-dataset.yaml"
    pipeline.write_text(yaml.safe_dump(data, sort_keys=False))
    before = paid_chain.token.functions.balanceOf(owner).call()
    r = aib("run", str(pipeline), "--json")
    assert r.returncode == 0, r.stderr
    summary = json.loads(r.stdout.strip().splitlines()[-1])
    assert summary["settlement"]["status"] == "settled"
    paid = [p for p in summary["settlement"]["payouts"] if p["block_ref"] == ds["ref"]]
    assert [{k: p[k] for k in ("block_ref", "asset_id", "amount_wei", "payee")} for p in paid] == [
        {"block_ref": ds["ref"], "asset_id": ds["asset_id"], "amount_wei": PRICE, "payee": owner}
    ], summary["settlement"]["payouts"]
    assert paid[0]["tx"] == summary["settlement"]["settle_tx"]
    assert paid_chain.token.functions.balanceOf(owner).call() - before == PRICE
    usage = [u for u in summary["usage"] if u["block_id"] == f"dataset:{ds['id']}"]
    assert len(usage) == 1 and usage[0]["amount_wei"] == PRICE


def test_a_provider_registers_an_installed_block_without_an_asset_on_the_provide_page(paid_chain):

    from runtime.chain_node import address_book, write_address_book

    book = address_book()
    ref = "service.api@1.0.0"
    kept = book["assets"].pop(ref)  # as if the block had been installed after the chain was deployed
    write_address_book(book)
    try:
        _register_on_the_provide_page(paid_chain, ref)
    finally:  # the other tests of the session pay through this chain: a failure here must not leave it without
        book = address_book()
        book["assets"].setdefault(ref, kept)
        write_address_book(book)


def _register_on_the_provide_page(paid_chain, ref: str) -> None:
    from pathlib import Path

    from streamlit.testing.v1 import AppTest

    from chain.client import contract
    from runtime.chain_node import address_book

    owner = paid_chain.w3.to_checksum_address("0x00000000000000000000000000000000000b10cc")
    page = Path(__file__).resolve().parents[2] / "builder" / "ui" / "pages" / "provide_page.py"
    at = AppTest.from_file(str(page), default_timeout=60)
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    at.text_input(key="block-owner").input("not an address")
    at.button(key="FormSubmitter:register-block-Register").click().run()
    assert any("is not an Ethereum address" in e for e in [x.value for x in at.error])
    assert ref not in address_book()["assets"]
    at.text_input(key="block-owner").input(owner)
    at.button(key="FormSubmitter:register-block-Register").click().run()
    assert not at.exception, [e.value for e in at.exception]
    asset_id = address_book()["assets"][ref]
    registry = contract(paid_chain.w3, "AssetRegistry", address_book())
    assert registry.functions.ownerOf(asset_id).call() == owner
    assert any(f"{ref} is registered as an asset of" in s.value for s in at.success), [s.value for s in at.success]
    assert any(f"asset number: `{asset_id}`" in m.value for m in at.markdown)  # the number, under Details
