"""AssetRegistry: ERC721 assets whose current owner is the payee."""

from web3.logs import DISCARD

from tests.chain.conftest import reverts, tx

HASH = bytes.fromhex("ab" * 32)
ZERO = "0x" + "0" * 40


def register(chain, owner, kind=1, price=10**15, uri="ipfs://model"):
    receipt = tx(chain.w3, chain.registry.functions.register(owner, kind, HASH, uri, price), owner)
    return chain.registry.events.AssetRegistered().process_receipt(receipt, errors=DISCARD)[0].args.assetId


def test_register_mints_to_the_owner_with_its_record(chain):
    owner = chain.roles.team
    asset_id = register(chain, owner)
    r = chain.registry.functions
    assert asset_id == 1 and r.totalAssets().call() == 1
    assert r.ownerOf(asset_id).call() == owner
    assert tuple(r.assetOf(asset_id).call()) == (1, HASH, 10**15, "ipfs://model")
    assert r.tokenURI(asset_id).call() == "ipfs://model"
    assert register(chain, owner) == 2


def test_zero_content_hash_and_zero_owner_are_refused(chain):
    f = chain.registry.functions
    assert (
        reverts(lambda: f.register(chain.roles.team, 0, b"\0" * 32, "", 1).transact())
        == "AssetRegistryZeroContentHash()"
    )
    assert reverts(lambda: f.register(ZERO, 0, HASH, "", 1).transact()).startswith("ERC721InvalidReceiver(")


def test_unknown_asset_is_refused(chain):
    assert reverts(lambda: chain.registry.functions.assetOf(42).call()) == "AssetRegistryUnknownAsset(assetId=42)"
    assert reverts(lambda: chain.registry.functions.ownerOf(42).call()) == "ERC721NonexistentToken(tokenId=42)"


def test_only_the_owner_changes_the_price(chain):
    asset_id = register(chain, chain.roles.team)
    tx(chain.w3, chain.registry.functions.setPrice(asset_id, 7), chain.roles.team)
    assert chain.registry.functions.assetOf(asset_id).call()[2] == 7
    error = reverts(lambda: chain.registry.functions.setPrice(asset_id, 1).transact({"from": chain.roles.stranger}))
    assert error == f"AssetRegistryNotOwner(assetId={asset_id}, caller={chain.roles.stranger})"


def test_selling_the_token_moves_the_payee(chain):
    asset_id = register(chain, chain.roles.team)
    tx(
        chain.w3,
        chain.registry.functions.transferFrom(chain.roles.team, chain.roles.company, asset_id),
        chain.roles.team,
    )
    assert chain.registry.functions.ownerOf(asset_id).call() == chain.roles.company
