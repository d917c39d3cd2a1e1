// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {ERC20} from "@openzeppelin/contracts/token/ERC20/ERC20.sol";
import {ERC20Capped} from "@openzeppelin/contracts/token/ERC20/extensions/ERC20Capped.sol";

/// @title AI Crypto (AIC)
/// @notice The payment token of Easy AI Builder. The whole capped supply is minted once, at deployment,
/// to the white paper's allocation; there is no function that mints afterwards.
contract AICToken is ERC20Capped {
    /// @notice 10,000,000,000 AIC with 18 decimals.
    uint256 public constant CAP = 10_000_000_000 ether;

    /// @notice An allocation address was the zero address.
    /// @param role The allocation whose address is missing.
    error AICTokenZeroAddress(string role);

    /// @notice Emitted once per allocation at deployment.
    /// @param role Name of the allocation (investors, team, ...).
    /// @param to Address that received it.
    /// @param amount Amount in wei.
    event Allocated(string role, address indexed to, uint256 amount);

    /// @param investors Receives 30 %.
    /// @param team Receives 25 %.
    /// @param ecosystem Receives 20 % (the incentive pool: the rewards contract, or a treasury until it exists).
    /// @param marketing Receives 15 %.
    /// @param advisors Receives 5 %.
    /// @param company Receives 5 %.
    constructor(
        address investors,
        address team,
        address ecosystem,
        address marketing,
        address advisors,
        address company
    ) ERC20("AI Crypto", "AIC") ERC20Capped(CAP) {
        _allocate("investors", investors, 30);
        _allocate("team", team, 25);
        _allocate("ecosystem", ecosystem, 20);
        _allocate("marketing", marketing, 15);
        _allocate("advisors", advisors, 5);
        _allocate("company", company, 5);
    }

    function _allocate(string memory role, address to, uint256 percent) private {
        if (to == address(0)) revert AICTokenZeroAddress(role);
        uint256 amount = (CAP * percent) / 100;
        _mint(to, amount);
        emit Allocated(role, to, amount);
    }
}
