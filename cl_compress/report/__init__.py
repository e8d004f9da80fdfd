"""Comparison report over a sweep: ``python -m cl_compress.report <sweep dir> [--out DIR]``.

Reads every ``results.json`` (and its ``metrics.csv``) below the sweep directory, groups
the runs by benchmark and by strategy variant, and writes ``report.md`` + PNGs + ``runs.csv``:
a table per benchmark (mean ± std over seeds), accuracy-matrix heat-maps, the accuracy of
each task over the stream, accuracy versus model size, per-layer figures logged under
``compress/`` (ranks, bits, free capacity ...), and, computed from the data, whether the
central claim of each paper is supported (:mod:`cl_compress.report.claims`, with the training
budget of every row). Strategies appear automatically: nothing here names a column per
strategy.

Imports run one way, each stage importing only earlier ones:
:mod:`cl_compress.report.runs` → :mod:`.load` → :mod:`.tables` (with :mod:`cl_compress.report.claims`) /
:mod:`.plots` → :mod:`.write`; this ``__init__`` only re-exports.
"""

from cl_compress.report import plots
from cl_compress.report.load import Sweep, assign_labels, load_sweep
from cl_compress.report.runs import Run, read_per_task, stat
from cl_compress.report.tables import (
    capacity_markdown,
    capacity_rows,
    class_il_markdown,
    common_settings,
    fmt_si,
    fmt_stat,
    lrpet_energy_markdown,
    lrpet_energy_rows,
    pareto,
    portable_text,
    summary_markdown,
    summary_rows,
)
from cl_compress.report.write import main, write_report

__all__ = ["Run", "Sweep", "assign_labels", "capacity_markdown", "capacity_rows",
           "class_il_markdown", "common_settings", "fmt_si", "fmt_stat", "load_sweep",
           "lrpet_energy_markdown", "lrpet_energy_rows", "main", "pareto", "plots",
           "portable_text", "read_per_task", "stat", "summary_markdown", "summary_rows",
           "write_report"]
