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

    constructor() ERC20("Evil", "EVIL") {
        _mint(msg.sender, 1e30);
    }

    function depositAsPayer(RunEscrow escrow_, bytes32 runId_, uint256 amount) external {
        escrow = escrow_;
        runId = runId_;
        _approve(address(this), address(escrow_), amount);
        escrow_.deposit(runId_, amount);
    }

    function _update(address from, address to, uint256 value) internal override {
        super._update(from, to, value);
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
