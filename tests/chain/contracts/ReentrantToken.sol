// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {ERC20} from "@openzeppelin/contracts/token/ERC20/ERC20.sol";
import {RunEscrow} from "contracts/RunEscrow.sol";

/// Test-only: a token that, when the escrow pays out, tries to re-enter the escrow to reclaim the same
/// deposit (it is the payer), so a successful attack would be paid twice.
contract ReentrantToken is ERC20 {
    RunEscrow public escrow;
    bytes32 public runId;
    bool public attacked;
    bool public attackSucceeded;
    bytes public attackError;
    bool public batchMode;
    uint256[] private _assetIds;
    uint256[] private _amounts;

    constructor() ERC20("Evil", "EVIL") {
        _mint(msg.sender, 1e30);
    }

    function depositAsPayer(RunEscrow escrow_, bytes32 runId_, uint256 amount) external {
        escrow = escrow_;
        runId = runId_;
        _approve(address(this), address(escrow_), amount);
        escrow_.deposit(runId_, amount);
    }

    /// Pays a batch as the payer; while the escrow pulls the first payout, re-enters to pay another batch.
    function settleBatchAsPayer(RunEscrow escrow_, bytes32 batchId, uint256[] calldata ids, uint256[] calldata amounts)
        external
    {
        escrow = escrow_;
        batchMode = true;
        _assetIds = ids;
        _amounts = amounts;
        _approve(address(this), address(escrow_), type(uint256).max);
        escrow_.settleBatch(batchId, ids, amounts, escrow_.feeBps());
    }

    function _update(address from, address to, uint256 value) internal override {
        super._update(from, to, value);
        if (batchMode && from == address(this) && !attacked) {
            attacked = true;
            try escrow.settleBatch(keccak256("another batch"), _assetIds, _amounts, escrow.feeBps()) {
                attackSucceeded = true;
            } catch (bytes memory err) {
                attackError = err;
            }
            return;
        }
        if (address(escrow) != address(0) && from == address(escrow) && !attacked) {
            attacked = true;
            try escrow.reclaim(runId) {
                attackSucceeded = true;
            } catch (bytes memory err) {
                attackError = err;
            }
        }
    }
}
