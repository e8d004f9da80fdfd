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


ERRBAR_NOTE = "error bars: ±1 standard deviation over seeds, clipped to [0, 100] %"
# per-layer kinds: (y-axis label with unit, title)
KIND_AXES = {
    "rank": ("rank k (singular values kept)", "rank per layer"),
    "new_rank": ("rank added by the task", "new rank per layer"),
    "bits": ("bits per weight", "bits per layer"),
    "free_fraction": ("free weights (fraction, 0-1)", "free weights per layer"),
    "owned_fraction": ("weights owned (fraction, 0-1)", "weights owned per layer"),
    "alpha": ("energy-transfer scale α", "α per layer"),
    "energy_removed": ("energy removed (fraction, 0-1)", "energy removed by projection"),
    "quant_drop_points": ("accuracy drop (% points)", "quantisation drop"),
    "usable_positions": ("usable positions (weights)", "usable positions"),
    "free_bits": ("free bits", "free bits"),
}


def clipped_err(mean: np.ndarray | float, std: np.ndarray | float,
                lo: float = 0.0, hi: float = 100.0) -> np.ndarray:
    """Asymmetric error bar ``[[down], [up]]`` of ±``std`` around ``mean`` clipped to
    ``[lo, hi]`` (an accuracy cannot pass 100 % or go below 0 %).

    >>> clipped_err(99.0, 3.0).tolist()
    [[3.0], [1.0]]
    """
    m, sd = np.atleast_1d(np.asarray(mean, float)), np.atleast_1d(np.asarray(std, float))
    return np.vstack([np.minimum(sd, m - lo), np.minimum(sd, hi - m)])


def heatmap_decimals(arrays: list[np.ndarray]) -> int:
    """0 decimals unless the cells crowd (all within 10 points) or whole numbers would make
    two different panels look the same: then 1.

    >>> a, b = np.array([[99.2]]), np.array([[98.9]])
    >>> heatmap_decimals([a, b]), heatmap_decimals([np.array([[50.0]]), np.array([[80.0]])])
    (1, 0)
    """
    values = np.concatenate([a[~np.isnan(a)] for a in arrays]) if arrays else np.array([])
    if values.size and values.max() - values.min() < 10:
        return 1
    rounded = [np.nan_to_num(np.round(a), nan=-1) for a in arrays]
    for i in range(len(arrays)):
        for j in range(i + 1, len(arrays)):
            same_int = np.array_equal(rounded[i], rounded[j])
            if same_int and not np.allclose(np.nan_to_num(arrays[i], nan=-1),
                                            np.nan_to_num(arrays[j], nan=-1), atol=0.05):
                return 1
    return 0


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


def draw_matrix(ax, arr: np.ndarray, title: str, decimals: int = 0, fontsize: float = 7,
                vmin: float = 0.0):
    """Draw an accuracy matrix in % (row i: after training task i; column j: task j) on
    ``ax``, with the values written in the cells up to 10 tasks; returns the image (for a
    colour bar)."""
    T = arr.shape[0]
    im = ax.imshow(arr, vmin=vmin, vmax=100, cmap="viridis")
    if T <= 10:
        for (i, j), v in np.ndenumerate(arr):
            if not math.isnan(v):
                ax.text(j, i, f"{v:.{decimals}f}", ha="center", va="center", fontsize=fontsize,
                        color="white" if v < vmin + 0.6 * (100 - vmin) else "black")
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
    arrays = {lab: mean_matrix(groups[lab]) for lab in labels}
    decimals = heatmap_decimals(list(arrays.values()))
    low = np.nanmin([np.nanmin(a) for a in arrays.values()]) if arrays else 0.0
    vmin = float(max(0, math.floor(low / 5) * 5 - 5)) if decimals else 0.0  # colours that differ
    for ax, lab in zip(axes.flat, labels):
        im = draw_matrix(ax, arrays[lab], f"{lab} (n={len(groups[lab])})", decimals=decimals,
                         fontsize=7 if decimals == 0 or T <= 5 else 6, vmin=vmin)
    for ax in list(axes.flat)[len(labels):]:
        ax.axis("off")
    if im is not None:
        fig.colorbar(im, ax=axes, shrink=0.8, label="accuracy (%), mean over seeds"
                     + (f" (scale from {vmin:.0f} %)" if vmin else ""))
    fig.suptitle(f"Accuracy matrices {title}".strip()
                 + (" (cells: mean over seeds, %, one decimal: the cells lie within 10 points)"
                    if decimals else " (cells: mean over seeds, %)"), fontsize=10)
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
                ax.fill_between(x, np.clip(m - s, 0, 100), np.clip(m + s, 0, 100),
                                color=col[lab], alpha=0.15, lw=0)
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
    fig.suptitle(f"Accuracy of each task over the stream {title}".strip()
                 + "\nlines: mean over seeds; bands: ±1 standard deviation, clipped to [0, 100] %",
                 fontsize=10)
    return fig


MARKERS = "osD^vP*Xhp<>"


def tradeoff(groups: dict[str, list[Run]], title: str = "") -> Figure:
    """Final average accuracy versus model size (log x): accounted bits and bytes on disk.

    Each strategy has its own colour and marker, named in the legend (no labels in the plot
    that could overlap). The y axis spans the strategies that sit together; one far below
    (e.g. naive, whose forgetting gives it a low mean and a wide spread) is drawn as a ▼ at
    the axis bottom with its value written beside it, so it does not flatten the others
    into one band. Error bars: ±1 std over seeds, clipped to [0, 100] %."""
    fig = Figure(figsize=(11, 4.8), layout="constrained")
    axes = fig.subplots(1, 2, sharey=True)
    col = colors(list(groups))
    pts = {lab: (stat(rs, "avg_acc"), len(rs)) for lab, rs in groups.items()}
    means = {lab: 100 * v[0][0] for lab, v in pts.items() if v[0][2]}
    lo, hi, off = _y_window(means)
    sizes = (("compression.stored_bits", 1 / 8, "stored size (accounted bits / 8), bytes"),
             ("compression.model_bytes", 1, "compressed artifact on disk (model_bytes), bytes"))
    for ax, (key, scale, xlabel) in zip(axes, sizes):
        for k, (lab, rs) in enumerate(groups.items()):
            xm, xs, n = stat(rs, key)
            ym, ys, _ = stat(rs, "avg_acc")
            if n == 0:
                continue
            y, sd = 100 * ym, 100 * ys
            if lab in off:
                ax.plot(xm * scale, lo, marker="v", ms=9, color=col[lab], ls="none",
                        label=f"{lab} (off scale: {y:.1f} ± {sd:.1f} %)", clip_on=False)
                ax.annotate(f"{lab} {y:.1f} %", (xm * scale, lo), textcoords="offset points",
                            xytext=(0, 8), fontsize=7, ha="center", color=col[lab])
                continue
            ax.errorbar(xm * scale, y, xerr=xs * scale if n > 1 else None,
                        yerr=clipped_err(y, sd) if n > 1 else None, fmt=MARKERS[k % len(MARKERS)],
                        ms=7, capsize=3, color=col[lab], label=lab)
        ax.set_xscale("log")
        ax.xaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
        ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: fmt_bytes(v)))
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.set_xlabel(xlabel, fontsize=9)
        ax.set_ylim(lo, hi)
        ax.grid(alpha=0.3, which="both")
    axes[0].set_ylabel("average accuracy after the last task (%)", fontsize=9)
    handles, names = axes[0].get_legend_handles_labels()
    fig.legend(handles, names, loc="outside lower center", ncol=min(4, len(names) or 1), fontsize=8)
    fig.suptitle(f"Accuracy versus model size {title}".strip() + f"\n{ERRBAR_NOTE}; "
                 "x error bars: ±1 std of the size", fontsize=10)
    return fig


def _y_window(means: dict[str, float]) -> tuple[float, float, set[str]]:
    """The y range of the trade-off plot: around the strategies that sit together; a mean
    more than 25 points below the next one up is drawn off scale."""
    if not means:
        return 0.0, 100.0, set()
    ordered = sorted(means.items(), key=lambda kv: kv[1])
    off: set[str] = set()
    for (_, v), (_, nxt) in zip(ordered, ordered[1:]):
        if nxt - v > 25 and len(off) < len(ordered) - 1:
            off |= {lab2 for lab2, v2 in ordered if v2 <= v}
    kept = [v for lab, v in means.items() if lab not in off]
    lo = max(0.0, math.floor(min(kept) - 6))
    hi = min(100.0, math.ceil(max(kept) + 3))
    return lo, max(hi, lo + 5), off


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
        ylabel, head = KIND_AXES.get(kind, (kind.replace("_", " "), kind.replace("_", " ")))
        ax.set_title(head, fontsize=9)
        ax.set_ylabel(ylabel, fontsize=8)
        ax.set_xlabel("after training task (0-based)", fontsize=8)
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
    fig = Figure(figsize=(max(6.5, 1.4 + 1.1 * len(labels)), 4.2), layout="constrained")
    ax = fig.subplots()
    x = np.arange(len(labels))
    ax.bar(x - 0.27, ti, 0.27, label="task-IL (task id given)", color="#9ecae1")
    ax.bar(x, ci, 0.27, label="class-IL (no task id: inferred, or one shared head)", color="#3182bd")
    ax.bar(x + 0.27, inf, 0.27, label="task-inference accuracy", color="#fdae6b")
    for name, v in (anchors or {}).items():
        ax.axhline(100 * v, ls="--", lw=1, color="grey")
        ax.text(len(labels) - 0.5, 100 * v, name, fontsize=7, va="bottom", ha="right")
    ax.set_xticks(x, labels, rotation=20, fontsize=8)
    ax.set_ylabel("accuracy (%)")
    ax.set_ylim(0, 100)
    ax.legend(fontsize=7, loc="lower left")
    fig.suptitle(f"class-IL vs task-IL {title}".strip() + "\n(mean over seeds)", fontsize=10)
    return fig
