"""``python -m cl_compress.report <sweep dir> [--out DIR]``."""

from cl_compress.report.write import main

raise SystemExit(main())
