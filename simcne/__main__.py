"""``python -m simcne``: the ``simcne`` command (also what ``torchrun -m simcne`` runs)."""

import sys

from .cli import main

sys.exit(main())
