// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {AccessControl} from "@openzeppelin/contracts/access/AccessControl.sol";
import {IERC20} from "@openzeppelin/contracts/token/ERC20/IERC20.sol";
import {SafeERC20} from "@openzeppelin/contracts/token/ERC20/utils/SafeERC20.sol";
import {IERC721} from "@openzeppelin/contracts/token/ERC721/IERC721.sol";
import {ReentrancyGuard} from "@openzeppelin/contracts/utils/ReentrancyGuard.sol";

/// @title Escrow of run payments
/// @notice A payer deposits the quoted price of a run (or of a batch of served API calls) under an id;
/// the settlement operator settles it exactly once, paying the current owner of every asset used, a
/// protocol fee to the treasury, and refunding the rest to the payer, all in one transaction. A deposit
/// that is never settled can be reclaimed by its payer after a timeout. Nobody else can move deposits.
/// A batch of served API calls is paid by its payer directly with `settleBatch`, under the same guarantees.
/// Every entry is keyed by its payer and its id together (`entryKey`): ids are predictable off chain, so an
/// id taken by another account never blocks, nor stands in for, a payer's own entry. The fee rate of a
/// deposit is fixed when it is made.
contract RunEscrow is AccessControl, ReentrancyGuard {
    using SafeERC20 for IERC20;

    /// @notice Role allowed to settle deposits (the off-chain ledger's settlement operator).
    bytes32 public constant SETTLER_ROLE = keccak256("SETTLER_ROLE");
    /// @notice The protocol fee can never exceed 10 %.
    uint16 public constant MAX_FEE_BPS = 1_000;

    /// @notice The payment token (AIC).
    IERC20 public immutable token;
    /// @notice The asset registry whose `ownerOf` is the payee of each asset.
    IERC721 public immutable assets;
    /// @notice Seconds after a deposit before its payer may reclaim it if unsettled.
    uint64 public immutable reclaimTimeout;
    /// @notice Receives the protocol fee.
    address public treasury;
    /// @notice Protocol fee in basis points of the payouts.
    uint16 public feeBps;

    /// @notice A deposit held for one run or batch.
    struct Deposit {
        address payer;
        uint64 depositedAt;
        bool closed; // settled or reclaimed
        uint16 feeBps; // the fee rate when it was made: the one the payer was quoted
        uint256 amount;
    }

    mapping(bytes32 entry => Deposit) private _deposits;

    /// @notice An address argument was zero.
    error RunEscrowZeroAddress();
    /// @notice A deposit of zero was attempted.
    error RunEscrowZeroAmount();
    /// @notice A deposit already exists under this id.
    /// @param runId The id.
    error RunEscrowDepositExists(bytes32 runId);
    /// @notice No deposit under this id.
    /// @param runId The id.
    error RunEscrowUnknownRun(bytes32 runId);
    /// @notice The deposit was already settled or reclaimed.
    /// @param runId The id.
    error RunEscrowAlreadyClosed(bytes32 runId);
    /// @notice assetIds and amounts differ in length.
    /// @param assetIds Length of assetIds.
    /// @param amounts Length of amounts.
    error RunEscrowLengthMismatch(uint256 assetIds, uint256 amounts);
    /// @notice payouts + fee + refund differ from the deposit.
    /// @param deposit The deposited amount.
    /// @param total payouts + fee + refund.
    error RunEscrowAmountMismatch(uint256 deposit, uint256 total);
    /// @notice An asset id does not exist in the registry.
    /// @param assetId The id.
    error RunEscrowUnknownAsset(uint256 assetId);
    /// @notice The fee changed since the batch was priced.
    /// @param quotedFeeBps The fee rate the payer priced the batch with.
    /// @param feeBps The fee rate now.
    error RunEscrowFeeChanged(uint16 quotedFeeBps, uint16 feeBps);
    /// @notice The fee is above MAX_FEE_BPS.
    /// @param feeBps The fee asked for.
    /// @param maxFeeBps The cap.
    error RunEscrowFeeTooHigh(uint16 feeBps, uint16 maxFeeBps);
    /// @notice The reclaim timeout has not passed.
    /// @param runId The id.
    /// @param availableAt When reclaiming becomes possible.
    error RunEscrowTooEarly(bytes32 runId, uint256 availableAt);

    /// @notice A deposit was made.
    event Deposited(bytes32 indexed runId, address indexed payer, uint256 amount, uint16 feeBps);
    /// @notice One asset owner was paid in a settlement.
    event Paid(bytes32 indexed runId, address indexed payer, uint256 indexed assetId, address payee, uint256 amount);
    /// @notice A deposit was settled.
    event Settled(bytes32 indexed runId, address indexed payer, uint256 payouts, uint256 fee, uint256 refund);
    /// @notice An unsettled deposit was reclaimed by its payer.
    event Reclaimed(bytes32 indexed runId, address indexed payer, uint256 amount);
    /// @notice The protocol fee changed.
    event FeeChanged(uint16 feeBps);
    /// @notice The treasury changed.
    event TreasuryChanged(address indexed treasury);

    /// @param token_ The payment token.
    /// @param assets_ The asset registry.
    /// @param treasury_ Receives the protocol fee.
    /// @param feeBps_ Protocol fee in basis points (≤ MAX_FEE_BPS).
    /// @param reclaimTimeout_ Seconds before an unsettled deposit may be reclaimed.
    /// @param admin Holds DEFAULT_ADMIN_ROLE (fee, treasury, roles).
    /// @param settler Holds SETTLER_ROLE.
    constructor(
        IERC20 token_,
        IERC721 assets_,
        address treasury_,
        uint16 feeBps_,
        uint64 reclaimTimeout_,
        address admin,
        address settler
    ) {
        if (
            address(token_) == address(0) || address(assets_) == address(0) || treasury_ == address(0)
                || admin == address(0) || settler == address(0)
        ) revert RunEscrowZeroAddress();
        if (feeBps_ > MAX_FEE_BPS) revert RunEscrowFeeTooHigh(feeBps_, MAX_FEE_BPS);
        token = token_;
        assets = assets_;
        treasury = treasury_;
        feeBps = feeBps_;
        reclaimTimeout = reclaimTimeout_;
        _grantRole(DEFAULT_ADMIN_ROLE, admin);
        _grantRole(SETTLER_ROLE, settler);
    }

    /// @notice The key of the entry of `payer` under `runId`.
    /// @param payer The paying account.
    /// @param runId The run or batch id.
    /// @return keccak256(abi.encode(payer, runId)).
    function entryKey(address payer, bytes32 runId) public pure returns (bytes32) {
        return keccak256(abi.encode(payer, runId));
    }

    /// @notice Deposit `amount` of the token for `runId` (approve this contract first), at today's fee rate.
    /// @param runId The run or batch id (e.g. keccak256 of the off-chain id); the caller's own.
    /// @param amount Amount in wei.
    function deposit(bytes32 runId, uint256 amount) external nonReentrant {
        if (amount == 0) revert RunEscrowZeroAmount();
        bytes32 key = entryKey(msg.sender, runId);
        if (_deposits[key].payer != address(0)) revert RunEscrowDepositExists(runId);
        _deposits[key] = Deposit(msg.sender, uint64(block.timestamp), false, feeBps, amount);
        emit Deposited(runId, msg.sender, amount, feeBps);
        token.safeTransferFrom(msg.sender, address(this), amount);
    }

    /// @notice The fee owed on `payouts` at today's rate.
    /// @param payouts Sum of the amounts paid to asset owners.
    /// @return The fee in wei (rounded down).
    function feeOn(uint256 payouts) public view returns (uint256) {
        return _fee(payouts, feeBps);
    }

    /// @notice Settle `payer`'s deposit for `runId` once: pay each asset's current owner, the fee (at the rate of
    /// the deposit) to the treasury, the refund to the payer. Only the settlement operator may; a payer never.
    /// @dev Reverts unless sum(amounts) + fee + refund equals the deposit.
    /// @param payer Who deposited.
    /// @param runId The run id.
    /// @param assetIds Assets used, one entry per payout.
    /// @param amounts Amount owed to each asset's owner, in wei.
    /// @param refund Amount returned to the payer, in wei.
    function settle(
        address payer,
        bytes32 runId,
        uint256[] calldata assetIds,
        uint256[] calldata amounts,
        uint256 refund
    ) external onlyRole(SETTLER_ROLE) nonReentrant {
        Deposit storage d = _deposits[entryKey(payer, runId)];
        if (d.payer == address(0)) revert RunEscrowUnknownRun(runId);
        if (d.closed) revert RunEscrowAlreadyClosed(runId);
        if (assetIds.length != amounts.length) revert RunEscrowLengthMismatch(assetIds.length, amounts.length);
        uint256 payouts = 0;
        for (uint256 i; i < amounts.length; ++i) {
            payouts += amounts[i];
        }
        uint256 fee = _fee(payouts, d.feeBps);
        if (payouts + fee + refund != d.amount) revert RunEscrowAmountMismatch(d.amount, payouts + fee + refund);
        d.closed = true; // effects before any transfer
        emit Settled(runId, payer, payouts, fee, refund);
        for (uint256 i; i < assetIds.length; ++i) {
            address payee = _ownerOf(assetIds[i]);
            if (amounts[i] > 0) token.safeTransfer(payee, amounts[i]);
            emit Paid(runId, payer, assetIds[i], payee, amounts[i]);
        }
        if (fee > 0) token.safeTransfer(treasury, fee);
        if (refund > 0) token.safeTransfer(payer, refund);
    }

    /// @notice Pay a batch of served API calls at once, from the caller's own balance (approve this contract
    /// first): each asset's current owner gets its amount and the treasury the fee on their sum, in one
    /// transaction. The batch id shares the deposits' id space and is closed at once, so a batch is paid
    /// exactly once and can never collide with a run.
    /// @dev Usage of a service is known in full when it is settled, so nothing is held in escrow.
    /// @param batchId The batch id (e.g. keccak256 of the off-chain batch id); the caller's own.
    /// @param assetIds Assets used, one entry per payout.
    /// @param amounts Amount owed to each asset's owner, in wei.
    /// @param quotedFeeBps The fee rate the batch was priced with: a fee changed since reverts, never charges more.
    function settleBatch(bytes32 batchId, uint256[] calldata assetIds, uint256[] calldata amounts, uint16 quotedFeeBps)
        external
        nonReentrant
    {
        bytes32 key = entryKey(msg.sender, batchId);
        if (_deposits[key].payer != address(0)) revert RunEscrowDepositExists(batchId);
        if (quotedFeeBps != feeBps) revert RunEscrowFeeChanged(quotedFeeBps, feeBps);
        if (assetIds.length != amounts.length) revert RunEscrowLengthMismatch(assetIds.length, amounts.length);
        uint256 payouts = 0;
        for (uint256 i; i < amounts.length; ++i) {
            payouts += amounts[i];
        }
        if (payouts == 0) revert RunEscrowZeroAmount();
        uint256 fee = _fee(payouts, feeBps);
        _deposits[key] = Deposit(msg.sender, uint64(block.timestamp), true, feeBps, payouts + fee); // effects first
        emit Deposited(batchId, msg.sender, payouts + fee, feeBps);
        emit Settled(batchId, msg.sender, payouts, fee, 0);
        for (uint256 i; i < assetIds.length; ++i) {
            address payee = _ownerOf(assetIds[i]);
            if (amounts[i] > 0) token.safeTransferFrom(msg.sender, payee, amounts[i]);
            emit Paid(batchId, msg.sender, assetIds[i], payee, amounts[i]);
        }
        if (fee > 0) token.safeTransferFrom(msg.sender, treasury, fee);
    }

    /// @notice Take back a deposit of the caller's that was not settled within `reclaimTimeout`.
    /// @param runId The run id.
    function reclaim(bytes32 runId) external nonReentrant {
        Deposit storage d = _deposits[entryKey(msg.sender, runId)];
        if (d.payer == address(0)) revert RunEscrowUnknownRun(runId);
        if (d.closed) revert RunEscrowAlreadyClosed(runId);
        uint256 availableAt = uint256(d.depositedAt) + reclaimTimeout;
        // A validator can shift the timestamp by seconds; the timeout is a day (Slither timestamp, accepted).
        // slither-disable-next-line timestamp
        if (block.timestamp < availableAt) revert RunEscrowTooEarly(runId, availableAt);
        d.closed = true;
        emit Reclaimed(runId, d.payer, d.amount);
        token.safeTransfer(d.payer, d.amount);
    }

    /// @notice The state of `payer`'s entry under `runId`.
    /// @param payer The paying account.
    /// @param runId The run or batch id.
    /// @return The deposit (payer zero when none).
    function depositOf(address payer, bytes32 runId) external view returns (Deposit memory) {
        return _deposits[entryKey(payer, runId)];
    }

    /// @notice Change the protocol fee (admin).
    /// @param feeBps_ New fee in basis points (≤ MAX_FEE_BPS).
    function setFee(uint16 feeBps_) external onlyRole(DEFAULT_ADMIN_ROLE) {
        if (feeBps_ > MAX_FEE_BPS) revert RunEscrowFeeTooHigh(feeBps_, MAX_FEE_BPS);
        feeBps = feeBps_;
        emit FeeChanged(feeBps_);
    }

    /// @notice Change the treasury (admin).
    /// @param treasury_ New treasury address.
    function setTreasury(address treasury_) external onlyRole(DEFAULT_ADMIN_ROLE) {
        if (treasury_ == address(0)) revert RunEscrowZeroAddress();
        treasury = treasury_;
        emit TreasuryChanged(treasury_);
    }

    function _fee(uint256 payouts, uint16 bps) private pure returns (uint256) {
        return (payouts * bps) / 10_000;
    }

    // Called once per payee inside settle's loop. The registry is immutable and ours, and an unknown asset
    // must revert the whole settle so that nothing is paid partially and the run stays pending
    // (Slither calls-loop, accepted).
    function _ownerOf(uint256 assetId) private view returns (address payee) {
        // slither-disable-next-line calls-loop
        try assets.ownerOf(assetId) returns (address owner) {
            payee = owner;
        } catch {
            revert RunEscrowUnknownAsset(assetId);
        }
    }
}
