// SPDX-License-Identifier: MIT
pragma solidity ^0.8.20;

/// Pays ETH onwards from inside a contract call, the way a Safe wallet or an
/// exchange's batcher does: the payee receives value in an internal call
/// frame, which no log and no transaction `to` records. For local chains.
contract Forwarder {
    function forward(address payable to) external payable {
        (bool ok, ) = to.call{value: msg.value}("");
        require(ok, "forward failed");
    }

    /// One transaction paying several payees: several internal frames.
    function split(address payable[] calldata to, uint256[] calldata amounts) external payable {
        require(to.length == amounts.length, "length mismatch");
        for (uint256 i = 0; i < to.length; i++) {
            (bool ok, ) = to[i].call{value: amounts[i]}("");
            require(ok, "split failed");
        }
    }

    /// Sends to `to` in a sub-call that then reverts, and swallows the
    /// revert: the transaction succeeds, the inner payment never happened.
    function forwardReverted(address payable to) external payable {
        try this.sendThenRevert{value: msg.value}(to) {} catch {}
        (bool ok, ) = payable(msg.sender).call{value: address(this).balance}("");
        require(ok, "refund failed");
    }

    function sendThenRevert(address payable to) external payable {
        (bool ok, ) = to.call{value: msg.value}("");
        require(ok, "send failed");
        revert("undone");
    }
}
