"""AICToken: the capped supply is minted once, to the white paper's allocation."""

import itertools

import pytest
from web3 import Web3
from web3.logs import DISCARD

from chain.artifacts import load_artifact
from chain.merkle import leaf_hash
from tests.chain.conftest import CLAIM_WINDOW, TIMEOUT, UNSTAKE_DELAY, deploy, reverts

CAP = 10_000_000_000 * 10**18
ZERO = "0x" + "0" * 40


def test_metadata_and_cap(chain):
    t = chain.token.functions
    assert (t.name().call(), t.symbol().call(), t.decimals().call()) == ("AI Crypto", "AIC", 18)
    assert t.cap().call() == t.totalSupply().call() == t.CAP().call() == CAP


@pytest.mark.parametrize(
    ("role", "percent"),
    [
        ("investors", 30),
        ("team", 25),
        ("ecosystem", 20),
        ("marketing", 15),
        ("advisors", 5),
        ("company", 5),
    ],
)
def test_allocation_follows_the_white_paper(chain, role, percent):
    assert chain.token.functions.balanceOf(getattr(chain.roles, role)).call() == CAP * percent // 100


def test_allocated_events_sum_to_the_cap(chain):
    events = chain.token.events.Allocated.get_logs(from_block=0)
    assert [e.args.role for e in events] == ["investors", "team", "ecosystem", "marketing", "advisors", "company"]
    assert sum(e.args.amount for e in events) == CAP


def test_nothing_can_mint_after_deployment(chain):
    """Every state-changing function of every deployed contract, sent by every role's account and a stranger with
    plausible arguments: the supply stays the cap the allocation minted, and the balances still add up to it.

    The first round calls everything; later rounds retry, from every sender, what nobody got through yet (it may
    need what other calls set up, or time: past the escrow's reclaim timeout and the unstake delay, then past the
    claim window). Giving roles up comes last, so that it cannot cut the rest short."""
    allocated = sum(e.args.amount for e in chain.token.events.Allocated.get_logs(from_block=0))
    sweep = Sweep(chain)
    tester = chain.w3.provider.ethereum_tester
    for wait in (TIMEOUT + UNSTAKE_DELAY, CLAIM_WINDOW, None):
        sweep.round(last=wait is None)
        if wait:
            tester.time_travel(chain.w3.eth.get_block("latest")["timestamp"] + wait + 1)

    assert chain.token.functions.totalSupply().call() == allocated == CAP
    holders = [*sweep.senders, *(c.address for c in sweep.contracts)]
    assert sum(chain.token.functions.balanceOf(h).call() for h in holders) == CAP  # moved around, never made
    # Each function went through at least once (the arguments are plausible enough to move tokens and assets:
    # transfers, deposits, a settlement, an epoch and its claim, stakes, a slash), and the checks refused the rest.
    functions = {key for key, _, _ in sweep.functions}
    assert sweep.succeeded == functions, f"never went through: {sorted(functions - sweep.succeeded)}"
    assert sweep.reverted > 0


def test_zero_allocation_address_is_refused(chain):
    r = chain.roles
    error = reverts(
        lambda: deploy(
            chain.w3, load_artifact("AICToken"), r.investors, ZERO, r.ecosystem, r.marketing, r.advisors, r.company
        )
    )
    assert "team" in error  # AICTokenZeroAddress("team")


def test_transfer_beyond_balance_reverts_with_the_erc20_error(chain):
    transfer = chain.token.functions.transfer(chain.roles.team, 1)
    error = reverts(lambda: transfer.transact({"from": chain.roles.stranger}))
    assert error.startswith("ERC20InsufficientBalance(")


CONTRACT_NAMES = ["AICToken", "AssetRegistry", "RunEscrow", "ContributionRewards"]  # as the chain fixture holds them
AMOUNT = 10**18
RUN_1, RUN_2 = Web3.keccak(text="run-1"), Web3.keccak(text="run-2")


class Sweep:
    """Calls ABI functions from each sender with plausible arguments (every combination of the candidates below),
    sending those that an eth_call shows would go through and counting those that revert."""

    def __init__(self, chain) -> None:
        self.chain = chain
        self.contracts = [chain.token, chain.registry, chain.escrow, chain.rewards]
        self.senders = list(dict.fromkeys(vars(chain.roles).values()))  # every role's account, the stranger last
        assert len(self.senders) == 10 and self.senders[-1] == chain.roles.stranger
        self.functions = [  # ("Contract.function", its ABI entry, the contract); overloads share the name
            (f"{name}.{fn['name']}", fn, contract)
            for contract, name in zip(self.contracts, CONTRACT_NAMES, strict=True)
            for fn in contract.abi
            if fn["type"] == "function" and fn["stateMutability"] in ("nonpayable", "payable")
        ]
        self.succeeded: set[str] = set()
        self.receipt_offers: set[int] = set()  # offers that signed a receipt: what a slash can name
        self.reverted = 0
        self.roles = {
            c.address: [c.get_function_by_name(e["name"])().call() for e in c.abi
                        if e["type"] == "function" and e["name"].endswith("_ROLE") and not e["inputs"]]
            for c in self.contracts
        }  # fmt: skip
        self.owners: dict[int, str] = {}  # asset id -> owner, from the Transfer events of the sweep's transactions

    def round(self, last: bool) -> None:
        """Each state-changing function from each sender; after the first round, only what never went through.
        Revoking and renouncing roles wait for the last round and close it, revoking first."""
        first = not self.succeeded
        giving_up = ("revokeRole", "renounceRole")
        todo = [f for f in self.functions if f[1]["name"] not in giving_up and (first or f[0] not in self.succeeded)]
        # A slash needs a receipt signed in the same round: a receipt's challenge window closes as time moves on.
        todo.sort(key=lambda f: f[1]["name"] == "slash")
        if last:
            todo += [f for name in giving_up for f in self.functions if f[1]["name"] == name]
        for key, fn, contract in todo:
            for sender in self.senders:
                self.call(contract, key, fn, sender)

    def owned(self, sender: str) -> list[int]:
        """The assets `sender` owns, oldest first (asset 1 when none: someone else's)."""
        return sorted(a for a, owner in self.owners.items() if owner == sender) or [1]

    def candidates(self, contract, fn: dict, sender: str) -> dict[str, list]:
        """Plausible values per argument: the sender deals with the contracts, with its own assets and with its
        neighbours in the list of senders (it pays and approves the next one, and is approved by the one before)."""
        c, name = self.chain, fn["name"]
        i = self.senders.index(sender)
        peer, prev = self.senders[(i + 1) % len(self.senders)], self.senders[i - 1]
        oldest, newest = self.owned(sender)[0], self.owned(sender)[-1]
        token = contract == c.token
        by_name = {
            "spender": [c.escrow.address, c.rewards.address, peer],
            "to": [sender] if name == "register" else [peer],
            "from": [prev] if token else [sender],
            "operator": [peer], "account": [c.roles.stranger], "callerConfirmation": [sender],
            "treasury_": [c.roles.stranger],
            "value": [CAP] if name == "approve" else [AMOUNT],  # CAP: an allowance above any balance
            "tokenId": [newest], "assetId": [oldest],
            # A slash names an offer that signed a receipt (receipts are per offer), not the verifier's own: the
            # newest, so that asset 1, which the epoch's one-leaf tree pays, is not excluded before its claim.
            "offerAssetId": [max(self.receipt_offers, default=oldest)] if name == "slash" else [oldest],
            "assetIds": [[oldest]], "amounts": [[AMOUNT // 2]],  # half a deposit: the rest is fee and refund
            "amount": [AMOUNT], "total": [2 * AMOUNT], "pricePerUnit": [AMOUNT],
            "refund": [None],  # what balances the deposit (filled in by `call`)
            "payer": [prev, sender],  # whose deposit: the settler settles the others' (entries are per payer)
            "quotedFeeBps": [None],  # the fee now (filled in by `call`)
            "epoch": [1, 2] if name == "closeEpoch" else [1],
            "segment": [1], "kind": [0, 2], "feeBps_": [100],
            "runId": {"deposit": [RUN_1, RUN_2], "reclaim": [RUN_2]}.get(name, [RUN_1]),
            "batchId": [Web3.keccak(text=f"batch of {sender}")],
            "role": self.roles[contract.address],
            "root": [leaf_hash(1, 1, AMOUNT)], "proof": [[]],  # a one-leaf tree: its root is the leaf
            "commitments": [[Web3.keccak(text=f"checkpoint {k}") for k in range(3)]],
            "replayed": [Web3.keccak(text="replayed")], "contentHash": [Web3.keccak(text=f"asset of {sender}")],
            "reportHash": [Web3.keccak(text="report")], "metadataURI": ["ipfs://asset"], "approved": [True],
            "data": [b""],
        }  # fmt: skip
        return {i["name"]: by_name[i["name"]] for i in fn["inputs"]}

    def call(self, contract, key: str, fn: dict, sender: str) -> None:
        w3, escrow = self.chain.w3, self.chain.escrow.functions
        choices = self.candidates(contract, fn, sender)
        types = ",".join(i["type"] for i in fn["inputs"])
        for combo in itertools.product(*choices.values()):
            args = dict(zip(choices, combo, strict=True))
            if "refund" in args:
                payouts = sum(args["amounts"])
                *_, fee_bps, deposit = escrow.depositOf(args["payer"], args["runId"]).call()
                args["refund"] = max(0, deposit - payouts - payouts * fee_bps // 10_000)
            if "quotedFeeBps" in args:
                args["quotedFeeBps"] = escrow.feeBps().call()
            call = contract.get_function_by_signature(f"{fn['name']}({types})")(*args.values())
            try:
                call.call({"from": sender})  # a revert shows here, without a transaction
            except Exception:  # ContractLogicError (web3) or TransactionFailed (eth-tester): refused
                self.reverted += 1
                continue
            # A given gas limit spares eth-tester's gas estimation (a dozen executions of the call).
            receipt = w3.eth.wait_for_transaction_receipt(call.transact({"from": sender, "gas": 5_000_000}))
            assert receipt["status"] == 1, (key, sender, args)
            self.succeeded.add(key)
            if fn["name"] == "submitReceipt":
                self.receipt_offers.add(args["offerAssetId"])
            if contract == self.chain.registry:  # who owns which asset (eth-tester's get_logs is far too slow)
                for event in contract.events.Transfer().process_receipt(receipt, errors=DISCARD):
                    self.owners[event.args.tokenId] = event.args.to
