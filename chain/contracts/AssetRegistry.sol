// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {ERC721} from "@openzeppelin/contracts/token/ERC721/ERC721.sol";

/// @title Asset registry of the Easy AI Builder marketplace
/// @notice Each token is a dataset, model, compute offer or trained service. Its current owner
/// (`ownerOf`) is the payee of the asset's revenue, so selling the token moves future revenue.
contract AssetRegistry is ERC721 {
    /// @notice What an asset is.
    enum Kind {
        Dataset,
        Model,
        ComputeOffer,
        Service
    }

    /// @notice The on-chain record of an asset.
    struct Asset {
        Kind kind;
        bytes32 contentHash;
        uint256 pricePerUnit;
        string metadataURI;
    }

    /// @notice The content hash was zero.
    error AssetRegistryZeroContentHash();

    /// @notice The asset does not exist.
    /// @param assetId The unknown id.
    error AssetRegistryUnknownAsset(uint256 assetId);

    /// @notice The caller is not the asset's owner.
    /// @param assetId The asset.
    /// @param caller Who called.
    error AssetRegistryNotOwner(uint256 assetId, address caller);

    /// @notice A new asset was registered.
    event AssetRegistered(
        uint256 indexed assetId, address indexed owner, Kind kind, bytes32 contentHash, uint256 pricePerUnit, string metadataURI
    );

    /// @notice An asset's price changed.
    event PriceChanged(uint256 indexed assetId, uint256 pricePerUnit);

    uint256 private _nextId = 1;
    mapping(uint256 assetId => Asset) private _assets;

    constructor() ERC721("Easy AI Builder Asset", "AIBA") {}

    /// @notice Register an asset and mint its token to `to`.
    /// @param to The first owner (the payee).
    /// @param kind Dataset, model, compute offer or service.
    /// @param contentHash sha256 of the artifact (non-zero).
    /// @param metadataURI Where its description lives.
    /// @param pricePerUnit Price in AIC wei per unit of use.
    /// @return assetId The new token id (ids start at 1).
    function register(address to, Kind kind, bytes32 contentHash, string calldata metadataURI, uint256 pricePerUnit)
        external
        returns (uint256 assetId)
    {
        if (contentHash == bytes32(0)) revert AssetRegistryZeroContentHash();
        assetId = _nextId++;
        _assets[assetId] = Asset(kind, contentHash, pricePerUnit, metadataURI);
        _safeMint(to, assetId);
        emit AssetRegistered(assetId, to, kind, contentHash, pricePerUnit, metadataURI);
    }

    /// @notice Change the price of an asset you own.
    /// @param assetId The asset.
    /// @param pricePerUnit The new price in AIC wei per unit.
    function setPrice(uint256 assetId, uint256 pricePerUnit) external {
        if (_ownerOf(assetId) != msg.sender) revert AssetRegistryNotOwner(assetId, msg.sender);
        _assets[assetId].pricePerUnit = pricePerUnit;
        emit PriceChanged(assetId, pricePerUnit);
    }

    /// @notice The record of an asset.
    /// @param assetId The asset.
    /// @return The asset's kind, content hash, price and metadata URI.
    function assetOf(uint256 assetId) external view returns (Asset memory) {
        if (_ownerOf(assetId) == address(0)) revert AssetRegistryUnknownAsset(assetId);
        return _assets[assetId];
    }

    /// @notice How many assets were registered.
    /// @return The count.
    function totalAssets() external view returns (uint256) {
        return _nextId - 1;
    }

    /// @inheritdoc ERC721
    function tokenURI(uint256 assetId) public view override returns (string memory) {
        _requireOwned(assetId);
        return _assets[assetId].metadataURI;
    }
}
