"""``python -m driftsnap`` runs the same command as the ``driftsnap`` console script."""

import sys

from driftsnap import cli

sys.exit(cli.main())
