"""``python -m MotorBandSignLib`` runs the ``motorband`` command."""

import sys

from .cli import main

sys.exit(main())
