"""The block catalog shipped with Easy AI Builder, grouped by domain."""

# Provider addresses of the blocks the project itself publishes. They are the local chain's
# well-known development accounts, so the embedded chain can pay them without any set-up.
DATA_PROVIDER = "0x70997970C51812dc3A010C7d01b50e0d17dc79C8"
MODEL_PROVIDER = "0x3C44CdDdB6a900fa2b585dd299e03d12FA4293BC"
COMPUTE_PROVIDER = "0x90F79bf6EB2c4f870365E785982E1f101E93b906"
SERVICE_PROVIDER = "0x15d34AAf54267DB7D7c367839AAf71A00a2C6A65"
