"""Published datasets: a provider's data file, checked by the data block it is for, stored by checksum, priced
per run and registered as a Dataset asset NFT whose current owner is paid every time a run reads it.

A dataset lives in `AIB_HOME/datasets/ds-<first 16 hex of its sha256>/`: the file itself and `dataset.json`
(name, block, price, owner, asset id). A pipeline uses it by pointing a data block's path at that file (the
workbench does this with "Use a published dataset"); the plan then adds the dataset's price to the quote and
the run records its usage under `dataset:<id>@1`, which settlement pays like any block.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import tempfile
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from builder.datasets import DatasetError, check_data_file, check_upload, data_param, upload_types
from builder.errors import AibError, BlockError, Problem, ValidationError
from builder.files import atomic_write_bytes, sha256_file
from builder.pipeline import Pipeline
from builder.plan import Plan, compile_plan, data_files
from builder.registry import get_block, versions_of
from builder.spec import Kind
from chain.accounts import use_signer
from chain.client import connect, contract, registered_asset
from runtime.chain_node import address_book, payments_enabled, record_asset, rpc_url, send
from runtime.config import get_settings

META = "dataset.json"
VERSION = "1"  # a dataset's content never changes: a new file is a new dataset
ASSET_KIND_DATASET = 0  # AssetRegistry.Kind.Dataset


@dataclass(frozen=True)
class Dataset:
    """One published dataset as stored in its dataset.json."""

    id: str
    name: str
    filename: str
    sha256: str
    block: str  # the data block it is checked by and meant for, id@version
    param: str  # that block's parameter the file goes in
    price_wei: int  # per run that reads it
    owner: str  # address paid (the asset's current owner once registered)
    description: str = ""
    created_at: str = ""
    size: int = 0
    asset_id: int | None = None
    register_tx: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def ref(self) -> str:
        """How usage, quotes and the address book name this dataset (like a block ref)."""
        return f"dataset:{self.id}@{VERSION}"

    @property
    def path(self) -> Path:
        return datasets_dir() / self.id / self.filename


def datasets_dir() -> Path:
    """Where published datasets are stored (AIB_HOME/datasets)."""
    return get_settings().home / "datasets"


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _data_block(ref: str) -> Any:
    block_id, _, version = ref.partition("@")
    try:
        block = get_block(block_id, version or (versions_of(block_id) or ["0.0.0"])[-1])
    except BlockError as exc:
        raise DatasetError(str(exc)) from None
    if block.kind != Kind.DATA:
        raise DatasetError(f"{block.ref()} is a {block.kind} block; a dataset is published for a data block")
    return block


def _write_meta(directory: Path, ds: Dataset) -> None:
    atomic_write_bytes(directory / META, json.dumps(asdict(ds), indent=2, sort_keys=True).encode())


def load(dataset_id: str) -> Dataset:
    """The published dataset `dataset_id`; DatasetError when there is none."""
    if not re.fullmatch(r"ds-[0-9a-f]{16}", dataset_id or ""):
        raise DatasetError(f"{dataset_id!r} is not a dataset id (they look like ds-0123456789abcdef)")
    meta = datasets_dir() / dataset_id / META
    try:
        raw = json.loads(meta.read_text())
    except FileNotFoundError:
        raise DatasetError(f"there is no published dataset {dataset_id}; `aib datasets list` shows them") from None
    except (OSError, json.JSONDecodeError):
        raise DatasetError(f"{meta} is not readable JSON") from None
    known = set(Dataset.__dataclass_fields__)
    return Dataset(**{k: v for k, v in raw.items() if k in known})


def list_datasets() -> list[Dataset]:
    """Every published dataset, newest first."""
    root = datasets_dir()
    found = []
    for meta in sorted(root.glob(f"ds-*/{META}")) if root.exists() else []:
        try:
            found.append(load(meta.parent.name))
        except DatasetError:
            continue  # a half-written directory of a crashed publish is never listed
    return sorted(found, key=lambda d: d.created_at, reverse=True)


def dataset_of_file(path: Path) -> Dataset | None:
    """The published dataset `path` is, or None when it is not inside the catalog.

    DatasetError when it is in the catalog but its bytes no longer match the checksum it was published with.
    """
    try:
        rel = path.resolve().relative_to(datasets_dir().resolve())
    except ValueError:
        return None
    if len(rel.parts) != 2 or rel.parts[1] == META:
        return None
    ds = load(rel.parts[0])
    if rel.parts[1] != ds.filename:
        return None
    if not path.exists() or sha256_file(path) != ds.sha256:
        raise DatasetError(f"the published dataset {ds.id} ({ds.filename}) was changed on disk; publish it again")
    return ds


def publish(
    filename: str,
    data: bytes,
    *,
    block: str,
    price_wei: int,
    owner: str,
    name: str | None = None,
    description: str = "",
    register: bool | None = None,
) -> Dataset:
    """Check `data` with `block`, store it by checksum and register its asset (when payments are on).

    Publishing the same bytes again is safe: with the same terms it returns the stored dataset (registering
    its asset if that had not happened yet); with other terms it is refused. Nothing is stored when a check
    fails. `register`: None registers when payments are enabled.
    """
    from web3 import Web3  # web3 costs a second to import: only publishing needs it

    cls = _data_block(block)
    safe = check_upload(filename, data, upload_types(cls))
    if price_wei < 0:
        raise DatasetError("a price cannot be negative")
    if not Web3.is_address(owner):
        raise DatasetError(f"{owner!r} is not an Ethereum address")
    owner = Web3.to_checksum_address(owner)
    param = data_param(cls)
    digest = sha256_bytes(data)
    dataset_id = f"ds-{digest[:16]}"
    root = datasets_dir()
    root.mkdir(parents=True, exist_ok=True)
    target = root / dataset_id
    if (target / META).exists():
        ds = load(dataset_id)
        if (ds.sha256, ds.block, ds.price_wei, ds.owner) != (digest, cls.ref(), price_wei, owner):
            raise DatasetError(
                f"{safe} is already published as {dataset_id} ({ds.name}, {ds.block}, owner {ds.owner}); "
                "the same file cannot be sold twice"
            )
    else:
        with tempfile.TemporaryDirectory(dir=root, prefix=".publish-") as tmp:
            staged = Path(tmp) / dataset_id
            staged.mkdir()
            (staged / safe).write_bytes(data)
            problems = check_data_file(cls, {param: safe}, staged, only=param)
            if problems:
                raise DatasetError(f"{safe}: {problems[0]}")
            ds = Dataset(
                id=dataset_id,
                name=(name or Path(safe).stem).strip() or Path(safe).stem,
                filename=safe,
                sha256=digest,
                block=cls.ref(),
                param=param,
                price_wei=price_wei,
                owner=owner,
                description=description.strip(),
                created_at=datetime.now(UTC).isoformat(timespec="seconds"),
                size=len(data),
            )
            _write_meta(staged, ds)
            try:
                os.rename(staged, target)  # atomic: the catalog never shows a half-written dataset
            except OSError:
                if not (target / META).exists():
                    raise
                shutil.rmtree(staged, ignore_errors=True)  # a concurrent publish of the same bytes won
                ds = load(dataset_id)
    if register is None:
        register = payments_enabled()
    if register and ds.asset_id is None:
        ds = register_asset(ds)
    return ds


def register_asset(ds: Dataset) -> Dataset:
    """Register `ds` as a Dataset asset NFT owned by its owner, exactly once, and name it in the address book.

    Before sending, the registry is searched for an asset already carrying this dataset's checksum and URI (a
    publish that crashed after registering), which is then adopted instead of minting a second one.
    """
    from web3.logs import DISCARD

    w3 = connect(rpc_url())
    book = address_book()
    registry = contract(w3, "AssetRegistry", book)
    uri = f"aib://datasets/{ds.id}"
    content = bytes.fromhex(ds.sha256)
    asset_id, tx = registered_asset(registry, uri, content) or (None, None)
    if asset_id is None:
        call = registry.functions.register(ds.owner, ASSET_KIND_DATASET, content, uri, ds.price_wei)
        receipt = send(w3, call, use_signer(w3, book))
        asset_id = registry.events.AssetRegistered().process_receipt(receipt, errors=DISCARD)[0].args.assetId
        tx = receipt.transactionHash.to_0x_hex()
    record_asset(ds.ref, asset_id)
    ds = replace(ds, asset_id=asset_id, register_tx=tx)
    _write_meta(datasets_dir() / ds.id, ds)
    return ds


def preview(ds: Dataset, rows: int = 5, seed: int | None = None) -> list[dict[str, Any]]:
    """A random sample of the dataset's rows, read by the block it is published for."""
    cls = _data_block(ds.block)
    block = cls()
    if not hasattr(block, "preview"):
        raise DatasetError(f"{ds.block} cannot preview its data")
    try:
        return block.preview(cls.Params(**{ds.param: ds.filename}), ds.path.parent, rows=rows, seed=seed)
    except AibError:
        raise
    except Exception as exc:  # a file damaged after publishing: one sentence, not a traceback
        raise DatasetError(f"{ds.id} cannot be previewed ({type(exc).__name__}: {exc})") from None


def royalties_for(paths: list[Path]) -> list[dict[str, Any]]:
    """What a step reading `paths` owes the published datasets among them: [{ref, provider, amount_wei}]."""
    owed = []
    for path in paths:
        ds = dataset_of_file(path)
        if ds is not None:
            owed.append({"ref": ds.ref, "dataset": ds.id, "provider": ds.owner, "amount_wei": ds.price_wei})
    return owed


def dataset_royalties(pipeline: Pipeline) -> dict[str, tuple[dict[str, Any], ...]]:
    """What each data file of `pipeline` owes the published datasets among them, by its YAML path
    (`blocks.NODE.params.PARAM`); ValidationError at that path for a published file changed on disk."""
    owed: dict[str, tuple[dict[str, Any], ...]] = {}
    for where, path in data_files(pipeline).items():
        try:
            found = royalties_for([path])
        except DatasetError as exc:
            raise ValidationError([Problem(where, str(exc))], pipeline.source) from None
        if found:
            owed[where] = tuple(found)
    return owed


def compile_with_datasets(pipeline: Pipeline) -> Plan:
    """Compile `pipeline` with the prices of the published datasets it reads (what `aib run` and the UI quote)."""
    return compile_plan(pipeline, royalties=dataset_royalties(pipeline))


__all__ = [
    "Dataset",
    "compile_with_datasets",
    "dataset_of_file",
    "dataset_royalties",
    "datasets_dir",
    "list_datasets",
    "load",
    "preview",
    "publish",
    "register_asset",
    "royalties_for",
]
