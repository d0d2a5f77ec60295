"""A local Solana JSON-RPC node that serves a live, deterministic, simulated Drift v2 market.

scenarios   named market set-ups (quiet, default, mainnet-scale)
mainnet     real mainnet PerpMarket and oracle bytes the markets start from
layout      Drift account and event bytes (anchorpy over driftpy's IDL, and a fast packer)
model       the simulator: oracles, makers, takers, fills, history; one slot per step
ledger      the bounded transaction log behind getSignaturesForAddress / getTransaction
truth       ground truth: the eligible book and the fills at any retained slot
faults      the failures it can inject
rpc         JSON-RPC methods and Solana's response and error shapes
server      HTTP + websocket server, clock and control endpoints; ``serve()`` for tests
command     ``driftsnap simnet`` (add_arguments / run)
"""
