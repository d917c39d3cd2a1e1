"""Smart contracts, the chain client and settlement (next milestone: see the chain issue)."""
