"""``python -m cl_compress.report <sweep dir> [--out DIR]``."""

from .write import main

raise SystemExit(main())
