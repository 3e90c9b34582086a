import sys

from simcne.cli import main

sys.exit(main())
