"""driftsnap: Drift v2 market-maker incentive rewards, computed from the chain itself."""

from importlib import metadata

try:
    __version__ = metadata.version("driftsnap")
except metadata.PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0+unknown"
