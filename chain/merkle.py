"""The Merkle tree of a rewards epoch, exactly as ContributionRewards.claim checks it (OpenZeppelin MerkleProof).

A leaf is keccak256(keccak256(abi.encode(epoch, assetId, amount))) (hashed twice so that no leaf can pass for an
inner node); inner nodes hash their two children in sorted order, so a proof is just the list of siblings.
"""

from __future__ import annotations

from dataclasses import dataclass

from eth_abi import encode
from eth_utils import keccak


def leaf_hash(epoch: int, asset_id: int, amount: int) -> bytes:
    """The leaf of (epoch, asset id, amount)."""
    return keccak(keccak(encode(["uint256", "uint256", "uint256"], [epoch, asset_id, amount])))


def _pair(a: bytes, b: bytes) -> bytes:
    return keccak(a + b) if a < b else keccak(b + a)


@dataclass(frozen=True)
class RewardTree:
    """A built tree: its root and each asset's proof."""

    epoch: int
    amounts: dict[int, int]
    root: bytes
    proofs: dict[int, list[bytes]]

    def proof(self, asset_id: int) -> list[bytes]:
        """The sibling hashes from `asset_id`'s leaf up to the root."""
        return self.proofs[asset_id]


def build_tree(epoch: int, amounts: dict[int, int]) -> RewardTree:
    """The tree of `amounts` (asset id → wei, each > 0) for `epoch`; ValueError when there is nothing to pay."""
    if not amounts:
        raise ValueError("an epoch needs at least one asset to pay")
    if any(a <= 0 for a in amounts.values()):
        raise ValueError("every leaf must pay more than 0 wei")
    leaves = sorted((leaf_hash(epoch, asset_id, amount), asset_id) for asset_id, amount in amounts.items())
    level = [h for h, _ in leaves]
    # Which node of the current level each asset's path passes through.
    position = {asset_id: i for i, (_, asset_id) in enumerate(leaves)}
    proofs: dict[int, list[bytes]] = {asset_id: [] for asset_id in amounts}
    while len(level) > 1:
        for asset_id, i in position.items():
            sibling = i ^ 1
            if sibling < len(level):  # the odd node out is carried up unchanged and needs no sibling
                proofs[asset_id].append(level[sibling])
            position[asset_id] = i // 2
        level = [_pair(level[i], level[i + 1]) if i + 1 < len(level) else level[i] for i in range(0, len(level), 2)]
    return RewardTree(epoch=epoch, amounts=dict(amounts), root=level[0], proofs=proofs)


def verify_proof(root: bytes, epoch: int, asset_id: int, amount: int, proof: list[bytes]) -> bool:
    """Whether `proof` leads from the leaf of (epoch, asset id, amount) to `root` (as MerkleProof.verify)."""
    node = leaf_hash(epoch, asset_id, amount)
    for sibling in proof:
        node = _pair(node, sibling)
    return node == root


__all__ = ["RewardTree", "build_tree", "leaf_hash", "verify_proof"]
