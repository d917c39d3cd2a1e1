// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {AccessControl} from "@openzeppelin/contracts/access/AccessControl.sol";
import {IERC20} from "@openzeppelin/contracts/token/ERC20/IERC20.sol";
import {SafeERC20} from "@openzeppelin/contracts/token/ERC20/utils/SafeERC20.sol";
import {IERC721} from "@openzeppelin/contracts/token/ERC721/IERC721.sol";
import {MerkleProof} from "@openzeppelin/contracts/utils/cryptography/MerkleProof.sol";
import {ReentrancyGuard} from "@openzeppelin/contracts/utils/ReentrancyGuard.sol";

/// @title Proof-of-Value rewards of the ecosystem-incentive pool
/// @notice In epochs, the incentive pool pays every asset pro rata to its verified, paid usage. The epoch
/// operator closes an epoch with one transaction: the Merkle root of (epoch, asset id, amount) leaves and the
/// epoch's total, which is pulled from the pool at once. The current owner of each asset is then paid by a
/// claim with a Merkle proof (anybody may send it; the tokens always go to the owner). Junk assets are left out
/// of the root off chain; the public report behind `reportHash` says which and why. What is not claimed within
/// the claim window is swept back to the pool.
///
/// Compute providers stake AIC on their compute-offer asset and sign a work receipt for each paid run: the
/// hashes of their checkpoints, one per training segment. When the verifier's replay of a segment differs from
/// the hash the provider signed, the verifier slashes the stake (the slashed part goes to the pool) and the
/// offer asset is excluded from rewards for good. The chain proves that the provider committed to the hash; the
/// replay itself is the verifier's (a trusted node), which is why only VERIFIER_ROLE may slash.
contract ContributionRewards is AccessControl, ReentrancyGuard {
    using SafeERC20 for IERC20;

    /// @notice May close epochs.
    bytes32 public constant EPOCH_ROLE = keccak256("EPOCH_ROLE");
    /// @notice May slash stakes with a provider's own receipt as evidence.
    bytes32 public constant VERIFIER_ROLE = keccak256("VERIFIER_ROLE");
    /// @notice A slash takes at most the whole stake.
    uint16 public constant BPS = 10_000;

    /// @notice The reward token (AIC).
    IERC20 public immutable token;
    /// @notice The asset registry whose `ownerOf` is the payee of each asset.
    IERC721 public immutable assets;
    /// @notice The ecosystem-incentive pool: epochs are paid from it (it approves this contract), sweeps and
    /// slashes return to it.
    address public immutable pool;
    /// @notice Seconds after an epoch is closed during which its rewards can be claimed.
    uint64 public immutable claimWindow;
    /// @notice Seconds between asking to unstake and being able to withdraw (longer than verification takes).
    uint64 public immutable unstakeDelay;
    /// @notice Part of a stake a proven cheat loses, in basis points.
    uint16 public immutable slashBps;

    /// @notice One closed epoch.
    struct Epoch {
        bytes32 root;
        bytes32 reportHash;
        uint128 total;
        uint128 claimed;
        uint64 closedAt;
        bool swept;
    }

    /// @notice A provider's stake on a compute-offer asset.
    struct Stake {
        address staker;
        uint128 amount;
        uint64 unstakeAt; // 0 while no withdrawal was asked for
        uint64 lockedUntil; // the end of the challenge window of its latest receipt: no withdrawal before
    }

    /// @notice A provider's signed work for one run.
    struct Receipt {
        address provider;
        uint64 segments;
        bool slashed;
        uint64 challengeUntil; // slashable until then; the offer's stake cannot leave before
        uint256 offerAssetId;
        bytes32 commitments; // keccak256 of the packed checkpoint hashes (checkpoint 0 = the start, then 1 per segment)
    }

    /// @notice Epochs 1..epochCount are closed.
    uint256 public epochCount;
    mapping(uint256 epoch => Epoch) private _epochs;
    mapping(uint256 epoch => mapping(uint256 assetId => bool)) private _claimed;
    /// @notice Assets excluded from rewards for proven cheating.
    mapping(uint256 assetId => bool) public excluded;
    mapping(uint256 assetId => Stake) private _stakes;
    mapping(bytes32 key => Receipt) private _receipts; // receiptKey(offer, run): a run id is predictable

    /// @notice An address argument was zero.
    error RewardsZeroAddress();
    /// @notice slashBps above BPS.
    /// @param slashBps The value given.
    error RewardsBadSlashBps(uint16 slashBps);
    /// @notice Epochs are closed one after another.
    /// @param expected The next epoch number.
    /// @param given The number given.
    error RewardsEpochOutOfOrder(uint256 expected, uint256 given);
    /// @notice An epoch needs a non-zero root and total.
    error RewardsEmptyEpoch();
    /// @notice The epoch is not closed.
    /// @param epoch The epoch.
    error RewardsUnknownEpoch(uint256 epoch);
    /// @notice This asset's reward of this epoch was claimed already.
    /// @param epoch The epoch.
    /// @param assetId The asset.
    error RewardsAlreadyClaimed(uint256 epoch, uint256 assetId);
    /// @notice The proof does not lead to the epoch's root.
    /// @param epoch The epoch.
    /// @param assetId The asset.
    error RewardsInvalidProof(uint256 epoch, uint256 assetId);
    /// @notice The asset is excluded for proven cheating.
    /// @param assetId The asset.
    error RewardsAssetExcluded(uint256 assetId);
    /// @notice The claim window has passed (or, for a sweep, not yet).
    /// @param epoch The epoch.
    /// @param deadline End of the claim window.
    error RewardsClaimWindow(uint256 epoch, uint256 deadline);
    /// @notice Claims would exceed the epoch's total (a malformed root).
    /// @param epoch The epoch.
    error RewardsOverclaim(uint256 epoch);
    /// @notice The epoch's remainder was swept already.
    /// @param epoch The epoch.
    error RewardsAlreadySwept(uint256 epoch);
    /// @notice An asset id does not exist in the registry.
    /// @param assetId The id.
    error RewardsUnknownAsset(uint256 assetId);
    /// @notice Only the asset's owner may do this.
    /// @param assetId The asset.
    /// @param caller Who called.
    error RewardsNotOwner(uint256 assetId, address caller);
    /// @notice The stake on this asset belongs to someone else (the asset changed hands).
    /// @param assetId The asset.
    /// @param staker The current staker.
    error RewardsStakeHeldByOther(uint256 assetId, address staker);
    /// @notice Nothing is staked by the caller on this asset.
    /// @param assetId The asset.
    error RewardsNoStake(uint256 assetId);
    /// @notice The unstake delay has not passed (or no withdrawal was asked for).
    /// @param assetId The asset.
    /// @param availableAt When withdrawing becomes possible (0: ask first).
    error RewardsTooEarly(uint256 assetId, uint256 availableAt);
    /// @notice An amount of zero.
    error RewardsZeroAmount();
    /// @notice A receipt needs the start checkpoint and at least one segment.
    /// @param runId The run.
    error RewardsNoSegments(bytes32 runId);
    /// @notice A receipt for this run exists already.
    /// @param runId The run.
    error RewardsReceiptExists(bytes32 runId);
    /// @notice No receipt for this run.
    /// @param runId The run.
    error RewardsUnknownReceipt(bytes32 runId);
    /// @notice The receipt was slashed already.
    /// @param runId The run.
    error RewardsAlreadySlashed(bytes32 runId);
    /// @notice The receipt's challenge window has passed.
    /// @param runId The run.
    /// @param closedAt When it closed.
    error RewardsChallengeClosed(bytes32 runId, uint256 closedAt);
    /// @notice The commitments given are not those the provider signed.
    /// @param runId The run.
    error RewardsCommitmentsMismatch(bytes32 runId);
    /// @notice The segment index is outside the receipt.
    /// @param runId The run.
    /// @param segment The index given.
    error RewardsBadSegment(bytes32 runId, uint256 segment);
    /// @notice The replayed checkpoint equals the committed one: no cheating to slash.
    /// @param runId The run.
    /// @param segment The segment.
    error RewardsNotACheat(bytes32 runId, uint256 segment);

    /// @notice An epoch was closed and its total pulled from the pool.
    event EpochClosed(uint256 indexed epoch, bytes32 root, uint256 total, bytes32 reportHash);
    /// @notice An asset's reward was paid to its current owner.
    event Claimed(uint256 indexed epoch, uint256 indexed assetId, address indexed payee, uint256 amount);
    /// @notice An epoch's unclaimed remainder went back to the pool.
    event Swept(uint256 indexed epoch, uint256 amount);
    /// @notice Stake was added to a compute-offer asset.
    event Staked(uint256 indexed assetId, address indexed staker, uint256 amount);
    /// @notice The staker asked to withdraw.
    event UnstakeRequested(uint256 indexed assetId, address indexed staker, uint256 availableAt);
    /// @notice The staker withdrew the stake.
    event Unstaked(uint256 indexed assetId, address indexed staker, uint256 amount);
    /// @notice A provider signed its work for a run.
    event ReceiptSubmitted(bytes32 indexed runId, uint256 indexed offerAssetId, address indexed provider, bytes32 commitments, uint256 segments);
    /// @notice A proven cheat: stake slashed to the pool and the asset excluded from rewards.
    event Slashed(bytes32 indexed runId, uint256 indexed offerAssetId, uint256 segment, bytes32 committed, bytes32 replayed, uint256 amount);

    /// @param token_ The reward token.
    /// @param assets_ The asset registry.
    /// @param pool_ The incentive pool (approves this contract for what epochs pay).
    /// @param claimWindow_ Seconds an epoch's rewards stay claimable.
    /// @param unstakeDelay_ Seconds between asking to unstake and withdrawing.
    /// @param slashBps_ Part of a stake a proven cheat loses, in basis points (≤ 10,000).
    /// @param admin Holds DEFAULT_ADMIN_ROLE.
    /// @param operator Holds EPOCH_ROLE and VERIFIER_ROLE.
    constructor(
        IERC20 token_,
        IERC721 assets_,
        address pool_,
        uint64 claimWindow_,
        uint64 unstakeDelay_,
        uint16 slashBps_,
        address admin,
        address operator
    ) {
        if (
            address(token_) == address(0) || address(assets_) == address(0) || pool_ == address(0)
                || admin == address(0) || operator == address(0)
        ) revert RewardsZeroAddress();
        if (slashBps_ > BPS) revert RewardsBadSlashBps(slashBps_);
        token = token_;
        assets = assets_;
        pool = pool_;
        claimWindow = claimWindow_;
        unstakeDelay = unstakeDelay_;
        slashBps = slashBps_;
        _grantRole(DEFAULT_ADMIN_ROLE, admin);
        _grantRole(EPOCH_ROLE, operator);
        _grantRole(VERIFIER_ROLE, operator);
    }

    // ---------------------------------------------------------------- epochs

    /// @notice Close epoch `epoch` (the next one) and pull its `total` from the pool, in one transaction.
    /// @param epoch Must be epochCount + 1, so a retried close can never pay twice.
    /// @param root Merkle root of keccak256(keccak256(abi.encode(epoch, assetId, amount))) leaves (sorted pairs).
    /// @param total Sum of the leaves' amounts.
    /// @param reportHash sha256 of the epoch's public report (who was paid, who was excluded and why).
    function closeEpoch(uint256 epoch, bytes32 root, uint256 total, bytes32 reportHash)
        external
        onlyRole(EPOCH_ROLE)
        nonReentrant
    {
        if (epoch != epochCount + 1) revert RewardsEpochOutOfOrder(epochCount + 1, epoch);
        if (root == bytes32(0) || total == 0) revert RewardsEmptyEpoch();
        epochCount = epoch;
        _epochs[epoch] = Epoch(root, reportHash, uint128(total), 0, uint64(block.timestamp), false);
        emit EpochClosed(epoch, root, total, reportHash);
        // `pool` is immutable (set at deployment) and only EPOCH_ROLE gets here: nobody can pull from another
        // address, and the pool caps what can be pulled with its allowance (Slither arbitrary-send-erc20, accepted).
        // slither-disable-next-line arbitrary-send-erc20
        token.safeTransferFrom(pool, address(this), total);
    }

    /// @notice Pay asset `assetId`'s reward of `epoch` to the asset's current owner.
    /// @param epoch A closed epoch.
    /// @param assetId The asset.
    /// @param amount Its amount in the epoch's tree.
    /// @param proof Sibling hashes from the leaf to the root.
    function claim(uint256 epoch, uint256 assetId, uint256 amount, bytes32[] calldata proof) external nonReentrant {
        Epoch storage e = _epochs[epoch];
        if (e.root == bytes32(0)) revert RewardsUnknownEpoch(epoch);
        uint256 deadline = uint256(e.closedAt) + claimWindow;
        // A validator can shift the timestamp by seconds; the window is weeks (Slither timestamp, accepted).
        // slither-disable-next-line timestamp
        if (block.timestamp > deadline) revert RewardsClaimWindow(epoch, deadline);
        if (_claimed[epoch][assetId]) revert RewardsAlreadyClaimed(epoch, assetId);
        if (excluded[assetId]) revert RewardsAssetExcluded(assetId);
        bytes32 leaf = keccak256(bytes.concat(keccak256(abi.encode(epoch, assetId, amount))));
        if (!MerkleProof.verifyCalldata(proof, e.root, leaf)) revert RewardsInvalidProof(epoch, assetId);
        if (uint256(e.claimed) + amount > e.total) revert RewardsOverclaim(epoch);
        _claimed[epoch][assetId] = true; // effects before the transfer
        e.claimed += uint128(amount);
        address payee = _ownerOf(assetId);
        emit Claimed(epoch, assetId, payee, amount);
        token.safeTransfer(payee, amount);
    }

    /// @notice After the claim window, return what `epoch` left unclaimed to the pool (anyone may call, once).
    /// @param epoch A closed epoch.
    function sweep(uint256 epoch) external nonReentrant {
        Epoch storage e = _epochs[epoch];
        if (e.root == bytes32(0)) revert RewardsUnknownEpoch(epoch);
        if (e.swept) revert RewardsAlreadySwept(epoch);
        uint256 deadline = uint256(e.closedAt) + claimWindow;
        // slither-disable-next-line timestamp
        if (block.timestamp <= deadline) revert RewardsClaimWindow(epoch, deadline);
        e.swept = true;
        uint256 rest = uint256(e.total) - e.claimed;
        emit Swept(epoch, rest);
        if (rest > 0) token.safeTransfer(pool, rest);
    }

    /// @notice A closed epoch.
    /// @param epoch The epoch.
    /// @return The epoch (root zero when not closed).
    function epochOf(uint256 epoch) external view returns (Epoch memory) {
        return _epochs[epoch];
    }

    /// @notice Whether an asset's reward of an epoch was claimed.
    /// @param epoch The epoch.
    /// @param assetId The asset.
    /// @return True once claimed.
    function isClaimed(uint256 epoch, uint256 assetId) external view returns (bool) {
        return _claimed[epoch][assetId];
    }

    // ---------------------------------------------------------------- stakes

    /// @notice Stake `amount` on compute-offer asset `assetId`, which the caller owns (approve this contract first).
    /// @param assetId The offer.
    /// @param amount Amount in wei.
    function stake(uint256 assetId, uint256 amount) external nonReentrant {
        if (amount == 0) revert RewardsZeroAmount();
        if (_ownerOf(assetId) != msg.sender) revert RewardsNotOwner(assetId, msg.sender);
        Stake storage s = _stakes[assetId];
        if (s.staker != address(0) && s.staker != msg.sender) revert RewardsStakeHeldByOther(assetId, s.staker);
        s.staker = msg.sender;
        s.amount += uint128(amount);
        s.unstakeAt = 0; // more stake cancels a pending withdrawal
        emit Staked(assetId, msg.sender, amount);
        token.safeTransferFrom(msg.sender, address(this), amount);
    }

    /// @notice Ask to withdraw the stake on `assetId`; possible after `unstakeDelay`, and still slashable until then.
    /// @param assetId The offer.
    function requestUnstake(uint256 assetId) external {
        Stake storage s = _stakes[assetId];
        if (s.staker != msg.sender || s.amount == 0) revert RewardsNoStake(assetId);
        uint64 availableAt = uint64(block.timestamp) + unstakeDelay;
        s.unstakeAt = availableAt;
        // Comparing two deadlines days apart, not a race with the clock (Slither timestamp, accepted).
        // slither-disable-next-line timestamp
        emit UnstakeRequested(assetId, msg.sender, availableAt > s.lockedUntil ? availableAt : s.lockedUntil);
    }

    /// @notice Withdraw the whole stake on `assetId` once the unstake delay has passed and no receipt of the offer
    /// can still be challenged.
    /// @param assetId The offer.
    function withdrawStake(uint256 assetId) external nonReentrant {
        Stake storage s = _stakes[assetId];
        if (s.staker != msg.sender || s.amount == 0) revert RewardsNoStake(assetId);
        uint256 availableAt = s.unstakeAt > s.lockedUntil ? s.unstakeAt : s.lockedUntil;
        // The delays are days long; a validator's few seconds of timestamp drift do not matter (Slither, accepted).
        // slither-disable-next-line timestamp
        if (s.unstakeAt == 0 || block.timestamp < availableAt) revert RewardsTooEarly(assetId, s.unstakeAt == 0 ? 0 : availableAt);
        uint256 amount = s.amount;
        delete _stakes[assetId];
        emit Unstaked(assetId, msg.sender, amount);
        token.safeTransfer(msg.sender, amount);
    }

    /// @notice The stake on an offer.
    /// @param assetId The offer.
    /// @return The stake (staker zero when none).
    function stakeOf(uint256 assetId) external view returns (Stake memory) {
        return _stakes[assetId];
    }

    // ---------------------------------------------------------------- work receipts and slashing

    /// @notice The key of offer `offerAssetId`'s receipt for `runId`: receipts are per offer, so a receipt another
    /// offer signs first under the same (predictable) run id never blocks this one.
    /// @param offerAssetId The compute offer.
    /// @param runId The run.
    /// @return keccak256(abi.encode(offerAssetId, runId)).
    function receiptKey(uint256 offerAssetId, bytes32 runId) public pure returns (bytes32) {
        return keccak256(abi.encode(offerAssetId, runId));
    }

    /// @notice Sign the work done for `runId` on offer `offerAssetId` (its owner only): the checkpoint hashes.
    /// It can be challenged for `unstakeDelay`, and the offer's stake cannot be withdrawn before that has passed.
    /// @param runId The run (keccak256 of the off-chain id).
    /// @param offerAssetId The compute offer that did the work.
    /// @param commitments Checkpoint hashes: the start, then one after each segment.
    function submitReceipt(bytes32 runId, uint256 offerAssetId, bytes32[] calldata commitments) external {
        bytes32 key = receiptKey(offerAssetId, runId);
        if (_receipts[key].provider != address(0)) revert RewardsReceiptExists(runId);
        if (_ownerOf(offerAssetId) != msg.sender) revert RewardsNotOwner(offerAssetId, msg.sender);
        if (commitments.length < 2) revert RewardsNoSegments(runId);
        bytes32 root = keccak256(abi.encodePacked(commitments));
        uint64 until = uint64(block.timestamp) + unstakeDelay;
        _receipts[key] = Receipt(msg.sender, uint64(commitments.length - 1), false, until, offerAssetId, root);
        Stake storage s = _stakes[offerAssetId];
        // The later of two deadlines days apart; a validator's seconds of drift do not matter (Slither, accepted).
        // slither-disable-next-line timestamp
        if (until > s.lockedUntil) s.lockedUntil = until;
        emit ReceiptSubmitted(runId, offerAssetId, msg.sender, root, commitments.length - 1);
    }

    /// @notice Slash the stake of offer `offerAssetId`, which signed `runId`'s receipt: segment `segment`'s replay
    /// from the preceding checkpoint gave `replayed`, not the hash the provider committed. Once per receipt, within
    /// its challenge window.
    /// @param runId The run.
    /// @param offerAssetId The offer whose receipt it is.
    /// @param commitments The provider's checkpoint hashes, exactly as signed.
    /// @param segment Segment index (1-based: checkpoint `segment` is the state after it).
    /// @param replayed The checkpoint hash the verifier's replay produced.
    function slash(
        bytes32 runId,
        uint256 offerAssetId,
        bytes32[] calldata commitments,
        uint256 segment,
        bytes32 replayed
    ) external onlyRole(VERIFIER_ROLE) nonReentrant {
        Receipt storage r = _receipts[receiptKey(offerAssetId, runId)];
        if (r.provider == address(0)) revert RewardsUnknownReceipt(runId);
        if (r.slashed) revert RewardsAlreadySlashed(runId);
        // slither-disable-next-line timestamp
        if (block.timestamp > r.challengeUntil) revert RewardsChallengeClosed(runId, r.challengeUntil);
        if (keccak256(abi.encodePacked(commitments)) != r.commitments) revert RewardsCommitmentsMismatch(runId);
        if (segment == 0 || segment >= commitments.length) revert RewardsBadSegment(runId, segment);
        if (commitments[segment] == replayed) revert RewardsNotACheat(runId, segment);
        r.slashed = true;
        excluded[r.offerAssetId] = true;
        Stake storage s = _stakes[r.offerAssetId];
        uint256 amount = (uint256(s.amount) * slashBps) / BPS;
        s.amount -= uint128(amount);
        emit Slashed(runId, r.offerAssetId, segment, commitments[segment], replayed, amount);
        if (amount > 0) token.safeTransfer(pool, amount);
    }

    /// @notice An offer's work receipt for a run.
    /// @param runId The run.
    /// @param offerAssetId The offer.
    /// @return The receipt (provider zero when none).
    function receiptOf(bytes32 runId, uint256 offerAssetId) external view returns (Receipt memory) {
        return _receipts[receiptKey(offerAssetId, runId)];
    }

    // An unknown asset must revert the whole call (Slither calls-loop does not apply: no loop).
    function _ownerOf(uint256 assetId) private view returns (address owner) {
        try assets.ownerOf(assetId) returns (address o) {
            owner = o;
        } catch {
            revert RewardsUnknownAsset(assetId);
        }
    }
}
