"""The provider protocol: how providers on other machines take leased training work from the coordinator.

A provider never touches the coordinator's database or disk. It signs in with its wallet (identity), reads the
sealed digitized inputs of a lease by hash (blobs, sealing), trains, and sends checkpoints back by hash; the
coordinator alone decides what was done, verified and billed (leases, api).
"""
