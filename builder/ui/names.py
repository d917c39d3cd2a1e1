"""Names instead of addresses on the workbench pages: who a wallet is and what an asset is, with the raw address
or transaction behind a closed "Details" expander."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import streamlit as st

# The roles of the address book (chain/deploy.py local_roles) in plain words; "advisors" shares the marketing
# account and "treasury" the company's, so those two are named together.
ROLE_NAMES = {
    "operator": "Easy AI Builder (operator)",
    "company": "Easy AI Builder company",
    "treasury": "Easy AI Builder company",
    "ecosystem": "Incentive pool",
    "investors": "Investors' allocation",
    "team": "Team allocation",
    "marketing": "Marketing and advisors",
    "advisors": "Marketing and advisors",
}
YOU = "You"


def _publisher_names() -> dict[str, str]:
    """The wallets the shipped blocks pay (blocks/__init__.py), by what they publish."""
    import blocks

    return {
        blocks.DATA_PROVIDER: "Easy AI Builder data",
        blocks.MODEL_PROVIDER: "Easy AI Builder models",
        blocks.COMPUTE_PROVIDER: "Easy AI Builder compute",
        blocks.SERVICE_PROVIDER: "Easy AI Builder services",
    }


def short_address(address: str) -> str:
    """0x1234…abcd: an address no one has named, short enough to read and compare."""
    return f"{address[:6]}…{address[-4:]}" if len(address) > 12 else address


@dataclass
class Directory:
    """Who is who: wallets and assets of the chain in use that this installation can name."""

    wallets: dict[str, str] = field(default_factory=dict)  # lower-case address -> name
    refs: dict[int, str] = field(default_factory=dict)  # asset id -> block, dataset or offer ref
    ref_names: dict[str, str] = field(default_factory=dict)  # dataset / offer ref -> its name

    def who(self, address: str | None) -> str:
        """The name of the wallet at `address`, else its short form."""
        if not address:
            return "—"
        return self.wallets.get(address.lower()) or short_address(address)

    def what(self, ref: str) -> str:
        """A block, dataset or compute offer in words (a block's ref is already its name)."""
        return self.ref_names.get(ref, ref)

    def asset(self, asset_id: int | None) -> str:
        """What asset `asset_id` is, by name."""
        if asset_id is None:
            return "—"
        ref = self.refs.get(int(asset_id))
        return self.what(ref) if ref else f"asset {asset_id}"


def directory(you: str | None = None) -> Directory:
    """Everything this installation can name: the address book's roles and assets, compute offers, datasets, the
    publishers of the shipped blocks, and `you` (the wallet this workbench pays with)."""
    from sqlalchemy import select

    from builder.errors import AibError
    from runtime.chain_node import address_book
    from runtime.datasets import list_datasets
    from runtime.db import ProviderRow, session_factory
    from runtime.work_receipts import offer_ref

    d = Directory()
    d.wallets.update({a.lower(): n for a, n in _publisher_names().items()})
    try:
        book: dict[str, Any] = address_book()
    except AibError:  # no chain: nothing on chain to name
        book = {}
    for role, address in book.get("roles", {}).items():
        d.wallets.setdefault(address.lower(), ROLE_NAMES.get(role, role.capitalize()))
    d.refs = {int(asset_id): ref for ref, asset_id in book.get("assets", {}).items()}
    for ds in list_datasets():
        d.ref_names[ds.ref] = f"dataset “{ds.name}”"
    with session_factory()() as s:
        for row in s.scalars(select(ProviderRow)):
            d.ref_names[offer_ref(row.id)] = f"compute offer “{row.name}”"
            if row.wallet:
                d.wallets.setdefault(row.wallet.lower(), f"{row.name} (compute provider)")
    if you:
        d.wallets[you.lower()] = YOU
    return d


def details(facts: dict[str, Any], label: str = "Details") -> None:
    """The addresses, transactions and ids behind what the page names, in a closed expander (none: nothing)."""
    shown = {k: v for k, v in facts.items() if v not in (None, "")}
    if shown:
        with st.expander(label):
            st.markdown("\n".join(f"- {k}: `{v}`" for k, v in shown.items()))


def named(text: str, facts: dict[str, Any], kind: str = "write") -> None:
    """`text` (names only) shown as `kind` (write, success, info), with `facts` in a Details expander under it."""
    {"write": st.write, "success": st.success, "info": st.info}[kind](text)
    details(facts)


__all__ = ["ROLE_NAMES", "YOU", "Directory", "details", "directory", "named", "short_address"]
