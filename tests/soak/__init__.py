"""Issue 9's reliability campaign (``campaign``), its checks against the simnet's ground truth
(``truth``), the short run in CI (``test_soak``) and the long one (``python -m tests.soak``)."""
