"""Figures of the comparison report (matplotlib ``Figure`` objects, no pyplot state, so they
save headless and display inline in a notebook). Most functions take one benchmark's
``{label: runs}`` groups from :class:`cl_compress.report.Sweep` and return a Figure.

The accuracy-matrix heat-map is drawn in one place, :func:`draw_matrix`, used for the
report's per-strategy grid and for the per-run PNG :mod:`cl_compress.tracking` logs."""

from __future__ import annotations

import math
import re
import statistics
import warnings

import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

from cl_compress.report.runs import Run, stat

TASK_KEY = re.compile(r"^task_(\d+)$")


def colors(labels: list[str]) -> dict[str, tuple]:
    """A stable colour per strategy label (same colour in every figure of a report)."""
    from matplotlib import colormaps

    cmap = colormaps["tab10" if len(labels) <= 10 else "tab20"]
    return {lab: cmap(i % cmap.N) for i, lab in enumerate(labels)}


def fmt_bytes(v: float) -> str:
    """Axis label for a size in bytes.

    >>> fmt_bytes(2e6), fmt_bytes(5e4), fmt_bytes(300)
    ('2 MB', '50 kB', '300 B')
    """
    for div, unit in ((1e9, "GB"), (1e6, "MB"), (1e3, "kB")):
        if v >= div:
            return f"{v / div:g} {unit}"
    return f"{v:g} B"


def matrix_percent(matrix: list[list[float | None]], n_tasks: int | None = None) -> np.ndarray:
    """One run's accuracy matrix (fractions; ``None`` or missing: not evaluated) in %, as a
    ``T x T`` array with NaN where there is no value (above the diagonal).

    >>> matrix_percent([[0.5], [0.25, 1.0]]).tolist()
    [[50.0, nan], [25.0, 100.0]]
    """
    T = n_tasks or max(len(matrix), max((len(r) for r in matrix), default=0))
    arr = np.full((T, T), np.nan)
    for i, row in enumerate(matrix):
        arr[i, :len(row)] = [np.nan if v is None else 100 * v for v in row]
    return arr


def mean_matrix(runs: list[Run]) -> np.ndarray:
    """Mean over seeds of the accuracy matrix, in %, NaN above the diagonal."""
    T = runs[0].res["n_tasks"]
    stack = np.stack([matrix_percent(r.res["acc_matrix"], T) for r in runs])
    with warnings.catch_warnings():  # cells above the diagonal are NaN in every run
        warnings.simplefilter("ignore", RuntimeWarning)
        return np.nanmean(stack, axis=0)


def draw_matrix(ax, arr: np.ndarray, title: str, decimals: int = 0, fontsize: float = 7):
    """Draw an accuracy matrix in % (row i: after training task i; column j: task j) on
    ``ax``, with the values written in the cells up to 10 tasks; returns the image (for a
    colour bar)."""
    T = arr.shape[0]
    im = ax.imshow(arr, vmin=0, vmax=100, cmap="viridis")
    if T <= 10:
        for (i, j), v in np.ndenumerate(arr):
            if not math.isnan(v):
                ax.text(j, i, f"{v:.{decimals}f}", ha="center", va="center", fontsize=fontsize,
                        color="white" if v < 60 else "black")
    ticks = range(T) if T <= 10 else range(0, T, max(1, T // 5))
    ax.set_xticks(ticks)
    ax.set_yticks(ticks)
    ax.set_xlabel("evaluated on task j", fontsize=fontsize + 1)
    ax.set_ylabel("after training task i", fontsize=fontsize + 1)
    ax.tick_params(labelsize=fontsize)
    ax.set_title(title, fontsize=9)
    return im


def matrix_figure(matrix: list[list[float | None]], title: str) -> Figure:
    """One run's accuracy matrix as a Figure (the PNG a run logs, cl_compress.tracking)."""
    arr = matrix_percent(matrix)
    fig = Figure(figsize=(1.1 + 0.6 * arr.shape[1], 0.9 + 0.55 * arr.shape[0]), layout="constrained")
    ax = fig.subplots()
    fig.colorbar(draw_matrix(ax, arr, title, decimals=1, fontsize=8), ax=ax, label="accuracy (%)")
    return fig


def heatmaps(groups: dict[str, list[Run]], title: str = "") -> Figure:
    """One accuracy-matrix heat-map per strategy (row i: after task i; column j: task j)."""
    labels = list(groups)
    ncol = min(3, len(labels))
    nrow = math.ceil(len(labels) / ncol)
    T = max(rs[0].res["n_tasks"] for rs in groups.values())
    cell = 0.45 + 0.42 * T
    fig = Figure(figsize=(ncol * cell + 1.2, nrow * cell + 0.8), layout="constrained")
    axes = fig.subplots(nrow, ncol, squeeze=False)
    im = None
    for ax, lab in zip(axes.flat, labels):
        im = draw_matrix(ax, mean_matrix(groups[lab]), f"{lab} (n={len(groups[lab])})")
    for ax in list(axes.flat)[len(labels):]:
        ax.axis("off")
    if im is not None:
        fig.colorbar(im, ax=axes, label="accuracy (%), mean over seeds", shrink=0.8)
    fig.suptitle(f"Accuracy matrices {title}".strip(), fontsize=11)
    return fig


def task_curves(groups: dict[str, list[Run]], title: str = "") -> Figure:
    """Accuracy of each task j over the stream (after training tasks j..T-1), mean ± std."""
    T = max(rs[0].res["n_tasks"] for rs in groups.values())
    ncol = min(5, T)
    nrow = math.ceil(T / ncol)
    fig = Figure(figsize=(2.6 * ncol + 0.4, 2.3 * nrow + 0.9), layout="constrained")
    axes = fig.subplots(nrow, ncol, squeeze=False, sharey=True)
    col = colors(list(groups))
    # a small horizontal offset per strategy keeps identical curves visible
    offset = {lab: 0.12 * (k - (len(groups) - 1) / 2) / max(1, len(groups) - 1)
              for k, lab in enumerate(groups)}
    for j, ax in enumerate(axes.flat):
        if j >= T:
            ax.axis("off")
            continue
        for lab, rs in groups.items():
            curves = np.array([[100 * r.res["acc_matrix"][i][j] for i in range(j, T)] for r in rs])
            x = np.arange(j, T) + offset[lab]
            m = curves.mean(axis=0)
            ax.plot(x, m, marker="o", ms=3, lw=1.4, color=col[lab], label=lab)
            if len(rs) > 1:
                s = curves.std(axis=0, ddof=1)
                ax.fill_between(x, m - s, m + s, color=col[lab], alpha=0.15, lw=0)
        ax.set_title(f"task {j}", fontsize=9)
        ax.set_xlim(-0.3, T - 0.7)
        ax.set_xticks(range(T) if T <= 10 else range(0, T, max(1, T // 5)))
        ax.tick_params(labelsize=7)
        ax.grid(alpha=0.3)
        if j % ncol == 0:
            ax.set_ylabel("accuracy (%)", fontsize=8)
        if j >= T - ncol:
            ax.set_xlabel("after training task", fontsize=8)
    handles, names = axes.flat[0].get_legend_handles_labels()
    fig.legend(handles, names, loc="outside lower center", ncol=min(4, len(names)), fontsize=8)
    fig.suptitle(f"Accuracy of each task over the stream {title}".strip(), fontsize=11)
    return fig


def tradeoff(groups: dict[str, list[Run]], title: str = "") -> Figure:
    """Final average accuracy versus model size (log x): accounted bits and bytes on disk."""
    fig = Figure(figsize=(11, 4.4), layout="constrained")
    axes = fig.subplots(1, 2, sharey=True)
    col = colors(list(groups))
    sizes = (("compression.stored_bits", 1 / 8, "stored size (accounted bits / 8)"),
             ("compression.model_bytes", 1, "compressed artifact on disk (model_bytes)"))
    for ax, (key, scale, xlabel) in zip(axes, sizes):
        for lab, rs in groups.items():
            xm, xs, n = stat(rs, key)
            ym, ys, _ = stat(rs, "avg_acc")
            if n == 0:
                continue
            ax.errorbar(xm * scale, 100 * ym, xerr=xs * scale if n > 1 else None,
                        yerr=100 * ys if n > 1 else None, fmt="o", ms=7, capsize=3,
                        color=col[lab], label=lab)
            k = list(groups).index(lab)  # alternate label offsets so neighbours stay legible
            ax.annotate(lab, (xm * scale, 100 * ym), textcoords="offset points",
                        xytext=(7, 6) if k % 2 == 0 else (7, -13), fontsize=8)
        ax.set_xscale("log")
        ax.xaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
        ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: fmt_bytes(v)))
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.set_xlabel(xlabel, fontsize=9)
        ax.grid(alpha=0.3, which="both")
    axes[0].set_ylabel("average accuracy after the last task (%)", fontsize=9)
    handles, names = axes[0].get_legend_handles_labels()
    fig.legend(handles, names, loc="outside lower center", ncol=min(4, len(names) or 1), fontsize=8)
    fig.suptitle(f"Accuracy versus model size {title}".strip(), fontsize=11)
    return fig


def per_layer_kinds(runs: list[Run]) -> dict[str, dict[str, dict[int, float]]]:
    """``{kind: {series: {task: mean over seeds}}}`` of the ``compress/<kind>/<name>`` figures;
    names ``task_<k>`` (one value per task) are merged into one series indexed by k."""
    out: dict[str, dict[str, dict[int, list[float]]]] = {}
    for r in runs:
        for kind, series in r.per_task.items():
            for name, values in series.items():
                m = TASK_KEY.match(name)
                if m:
                    out.setdefault(kind, {}).setdefault("per task", {}).setdefault(
                        int(m.group(1)), []).extend(values.values())
                    continue
                for t, v in values.items():
                    out.setdefault(kind, {}).setdefault(name, {}).setdefault(t, []).append(v)
    return {k: {n: {t: statistics.fmean(v) for t, v in sorted(s.items())} for n, s in ser.items()}
            for k, ser in out.items()}


def per_layer(label: str, runs: list[Run], title: str = "") -> Figure | None:
    """One panel per logged kind (rank, bits, free_fraction ...): value after each task, one
    line per layer (mean over seeds). ``None`` when the strategy logs no such figures."""
    kinds = per_layer_kinds(runs)
    if not kinds:
        return None
    ncol = min(3, len(kinds))
    nrow = math.ceil(len(kinds) / ncol)
    fig = Figure(figsize=(4.2 * ncol, 3.2 * nrow + 0.5), layout="constrained")
    axes = fig.subplots(nrow, ncol, squeeze=False)
    for ax, (kind, series) in zip(axes.flat, sorted(kinds.items())):
        for name, values in series.items():
            ax.plot(list(values), list(values.values()), marker="o", ms=3, lw=1.2,
                    label=name if name == "per task" or name.startswith("layer") else f"layer {name}")
        ax.set_xticks(range(max(max(v) for v in series.values()) + 1))
        ax.set_title(kind.replace("_", " "), fontsize=9)
        ax.set_xlabel("task", fontsize=8)
        ax.tick_params(labelsize=7)
        ax.grid(alpha=0.3)
        if len(series) <= 12:
            ax.legend(fontsize=6, loc="best")
    for ax in list(axes.flat)[len(kinds):]:
        ax.axis("off")
    fig.suptitle(f"{label}: per-layer figures after each task (n={len(runs)}) {title}".strip(),
                 fontsize=11)
    return fig


def class_il_bars(groups: dict[str, list[Run]], title: str = "",
                  anchors: dict[str, float] | None = None) -> Figure:
    """Class-IL accuracy (task id inferred; naive: shared head) beside task-IL accuracy (task
    id given) per strategy, mean over seeds, with horizontal lines at the ``anchors``
    (e.g. Avalanche Replay-200), in %."""
    labels = list(groups)
    ci = [100 * stat(rs, "avg_acc")[0] for rs in groups.values()]
    ti = [100 * stat(rs, "task_il.avg_acc")[0] for rs in groups.values()]
    inf = [100 * stat(rs, "class_il.task_inference_avg")[0] for rs in groups.values()]
    fig = Figure(figsize=(1.4 + 1.1 * len(labels), 3.8), layout="constrained")
    ax = fig.subplots()
    x = np.arange(len(labels))
    ax.bar(x - 0.27, ti, 0.27, label="task-IL (task id given)", color="#9ecae1")
    ax.bar(x, ci, 0.27, label="class-IL (task id inferred)", color="#3182bd")
    ax.bar(x + 0.27, inf, 0.27, label="task-inference accuracy", color="#fdae6b")
    for name, v in (anchors or {}).items():
        ax.axhline(100 * v, ls="--", lw=1, color="grey")
        ax.text(len(labels) - 0.5, 100 * v, name, fontsize=7, va="bottom", ha="right")
    ax.set_xticks(x, labels, rotation=20, fontsize=8)
    ax.set_ylabel("accuracy (%)")
    ax.set_ylim(0, 100)
    ax.legend(fontsize=7, loc="lower left")
    ax.set_title(f"class-IL vs task-IL {title}", fontsize=9)
    return fig
