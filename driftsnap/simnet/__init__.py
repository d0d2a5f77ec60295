"""A local Solana JSON-RPC simulator of a Drift v2 market (tests, demo, benchmarks)."""
