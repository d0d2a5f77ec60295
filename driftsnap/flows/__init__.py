"""The jobs, one module each: where chain, scoring and store are joined.

``tick``    one cadence tick: the week's schedule, the sample instant, snapshot, scores, one
            write; the intervals owed as missed
``fills``   maker fills from the chain into the store, exactly once; the finalized pass; the
            gap check against the chain's counters
``close``   the week close: refusals, terms, settlement, digests; verify; forfeits
``errors``  what the flows refuse (the tree is drawn there)

Rules of this room (import-linter): a flow never imports the daemon or the CLI, and is given
its parts (an RPC client, an engine, a clock, the seed files) by whoever wires them
(:mod:`driftsnap.parts`); the close never imports the chain, so the week report can use it.
"""
