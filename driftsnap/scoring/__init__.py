"""Pure scoring math (spec ``shared/spec/scoring.md``): no I/O, no chain, no database.

Modules:

``book``      a snapshot of one market's eligible orders, and its columnar numpy view
``methods``   named, immutable parameter sets with a canonical JSON form and ``params_hash``
``brackets``  method family of the Aug-2023 program (``drift-2023-08``)
``mm_scoring`` port of Drift's own scorer (``drift-mm-scoring``, ``drift-points-2024-01``)
``scorer``    one entry point: score a book under any method
``settlement`` a week's aggregation, participants, forfeits, shares and payouts
``payouts``   integer micro-USDC allocation by largest remainder
"""
