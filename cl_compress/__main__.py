"""``python -m cl_compress list`` / ``python -m cl_compress new-strategy NAME DIR``."""

import sys

from cl_compress.cli import main

sys.exit(main())
