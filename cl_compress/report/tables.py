"""Text of the report: the tables (mean ± std over seeds), the shared settings, the Pareto
front, runs.csv, the W&B and tuning notes, and path clean-up. The verdicts themselves come
from :mod:`cl_compress.report.claims` (shared with the bench scripts).

Imports run one way: :mod:`.load` and :mod:`cl_compress.report.runs` → this module → :mod:`.write`.
"""

from __future__ import annotations

import csv
import math
import os
import re
from pathlib import Path
from typing import Any

from cl_compress.report.load import Sweep
from cl_compress.report.runs import Run, stat

# (key in results.json or a derived name, header, scale, format: int decimals or "si")
COLUMNS: list[tuple[str, str, float, Any]] = [
    ("avg_acc", "avg acc %", 100, 2), ("bwt", "BWT %", 100, 2),
    ("forgetting", "forgetting %", 100, 2), ("plasticity", "plasticity %", 100, 2),
    ("compression.stored_params", "stored params", 1, "si"),
    ("compression.stored_bits", "stored bits", 1, "si"),
    ("compression.bits_per_param", "bits/param", 1, 2),
    ("compression.model_bytes", "model bytes", 1, "si"),
    ("compression.ratio_vs_individual", "× vs individual", 1, 2),
    ("inference.flops_mean", "FLOPs/sample (mean over tasks)", 1, "si"),
    ("inference.flops_last", "FLOPs/sample (last task)", 1, "si"),
    ("budget.train_steps_per_task", "train steps/task", 1, 0),
    ("budget.extra_steps_per_task", "extra steps/task", 1, 0),
    ("train_seconds", "train s", 1, 1), ("total_seconds", "total s", 1, 1),
]


def common_settings(runs: list[Run]) -> str:
    """One line with the shared stream and settings of a benchmark's runs."""
    c = (runs[0].res.get("config") or {}) if runs else {}
    b, t, m = c.get("benchmark", {}), c.get("train", {}), c.get("model", {})
    parts = [f"{runs[0].res.get('n_tasks')} tasks" if runs else "",
             f"model `{m.get('name', '?')}`", f"{t.get('epochs', '?')} epoch(s)/task",
             f"{t.get('optimizer', '?')} lr {t.get('lr', '?')}", f"batch {t.get('batch_size', '?')}"]
    if t.get("steps_per_task"):
        parts[2] = f"{t['steps_per_task']} optimiser steps/task"
    if b.get("max_train_per_task"):
        parts.append(f"≤ {b['max_train_per_task']} training samples/task")
    if b.get("max_test_per_task"):
        parts.append(f"≤ {b['max_test_per_task']} test samples/task")
    return ", ".join(p for p in parts if p)


def pareto(groups: dict[str, list[Run]]) -> list[str]:
    """Labels that no other label beats on both stored bits (smaller) and avg_acc (higher)."""
    pts = {lab: (stat(rs, "compression.stored_bits")[0], stat(rs, "avg_acc")[0])
           for lab, rs in groups.items()}
    return [a for a, (ba, aa) in pts.items()
            if not any(bb <= ba and ab >= aa and (bb, ab) != (ba, aa) for bb, ab in pts.values())]


def fmt_si(v: float) -> str:
    """Compact number with 3 significant digits.

    >>> [fmt_si(v) for v in (1_234_567, 249_000, 84.5, 1e9)]
    ['1.23M', '249k', '84.5', '1.00G']
    """
    for div, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k"), (1, "")):
        if abs(v) >= div or div == 1:
            return f"{v / div:#.3g}".rstrip(".") + suffix
    return str(v)


def fmt_stat(mean: float, std: float, n: int, scale: float = 1.0, spec: Any = 2) -> str:
    """``mean ± std`` (``±`` omitted for a single run, ``–`` when missing).

    >>> fmt_stat(0.85, 0.0707, 2, 100), fmt_stat(0.9, 0.0, 1, 100), fmt_stat(0, 0, 0)
    ('85.00 ± 7.07', '90.00', '–')
    """
    if n == 0:
        return "–"
    m, s = mean * scale, std * scale
    text = fmt_si(m) if spec == "si" else f"{m:.{spec}f}"
    if n > 1:
        text += " ± " + (fmt_si(s) if spec == "si" else f"{s:.{spec}f}")
    return text


def summary_rows(groups: dict[str, list[Run]]) -> list[dict[str, Any]]:
    """One row per strategy variant: label, seeds and ``(mean, std, n)`` per column key."""
    return [{"label": label, "seeds": sorted(r.res.get("seed") for r in rs),
             **{key: stat(rs, key) for key, *_ in COLUMNS}} for label, rs in groups.items()]


def summary_markdown(groups: dict[str, list[Run]]) -> str:
    """The Markdown table of one benchmark (mean ± std over seeds)."""
    head = ["strategy", "seeds"] + [h for _, h, _, _ in COLUMNS]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for row in summary_rows(groups):
        cells = [f"`{row['label']}`", str(len(row["seeds"]))]
        cells += [fmt_stat(*row[key], scale, spec) for key, _, scale, spec in COLUMNS]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


CLASS_IL_COLUMNS: list[tuple[str, str, float, Any]] = [
    ("avg_acc", "class-IL acc % (task id inferred)", 100, 2),
    ("task_il.avg_acc", "task-IL acc % (task id given)", 100, 2),
    ("class_il.task_inference_avg", "task inference %", 100, 2),
    ("bwt", "class-IL BWT %", 100, 2),
    ("compression.stored_params", "stored params", 1, "si"),
    ("compression.task_inference_params", "of which task inference", 1, "si"),
    ("budget.train_steps_per_task", "train steps/task", 1, 0),
    ("budget.extra_steps_per_task", "extra steps/task", 1, 0),
    ("train_seconds", "train s", 1, 1),
]


def class_il_markdown(groups: dict[str, list[Run]], anchors: dict[str, float] | None = None) -> str:
    """The class-IL table of a class-incremental benchmark: the accuracy with the task id
    inferred (``acc_matrix``; naive: its shared head), with the task id given and the
    task-inference accuracy, beside the ``anchors`` (e.g. Avalanche Replay-200), in %."""
    head = ["strategy", "seeds", "score / negatives"] + [h for _, h, _, _ in CLASS_IL_COLUMNS]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for label, rs in groups.items():
        ci = rs[0].res.get("class_il") or {}
        how = f"{ci['score']} / {ci['negatives']}" + (" + refit" if ci.get("refit_old_heads")
                                                      else "") if ci else "shared head"
        cells = [f"`{label}`", str(len(rs)), how]
        for key, _, scale, spec in CLASS_IL_COLUMNS:
            v = stat(rs, key)
            if key == "compression.task_inference_params" and v[2] == 0 and ci:
                v = (0.0, 0.0, len(rs))
            cells.append(fmt_stat(*v, scale, spec))
        lines.append("| " + " | ".join(cells) + " |")
    for name, v in (anchors or {}).items():
        lines.append(f"| {name} | | anchor | {100 * v:.2f} |" + " |" * (len(head) - 4))
    return "\n".join(lines)


def write_runs_csv(sweep: Sweep, path: Path) -> None:
    """Every run's headline figures, one row per run (the table's raw data)."""
    keys = [k for k, *_ in COLUMNS]
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["benchmark", "label", "strategy", "seed", *keys, "run_dir"])
        for r in sorted(sweep.runs, key=lambda r: (r.bench, r.label, r.res.get("seed", 0))):
            w.writerow([r.bench, r.label, r.strategy, r.res.get("seed"),
                        *[r.get(k) for k in keys], str(r.path.relative_to(sweep.root))])


def slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text).strip("_")


def wandb_markdown(sweep: Sweep) -> str:
    """How to find the sweep's runs in W&B and upload offline ones."""
    loggers = [(r.res.get("config") or {}).get("logger") or {} for r in sweep.runs]
    groups = sorted({str(lg.get("group")) for lg in loggers})
    offline = sorted(sweep.root.rglob("wandb/offline-run-*"))
    on = any(lg.get("wandb") and lg.get("mode") != "disabled" for lg in loggers)
    lines = [("Runs of this sweep" if on else "W&B was off for this sweep (`logger=none`); with the "
              "default logger, runs") + f" share the W&B group {' / '.join(f'`{g}`' for g in groups)} "
             "and are tagged with strategy, benchmark, scenario and seed (also in their config), so "
             "a W&B dashboard compares them without set-up: filter by the group and group runs by "
             "`method` (`strategy.name` would pool a strategy with its variants)."]
    if offline:
        lines.append(f"{len(offline)} run(s) were logged offline; upload them with\n\n```bash\n"
                     f"find {sweep.root} -type d -name 'offline-run-*' -exec wandb sync {{}} +\n```")
    else:
        lines.append("No offline W&B run directory was found below the sweep directory.")
    return "\n\n".join(lines)


def tuning_lines(tuning: dict[str, Any]) -> list[str]:
    """Report lines for a preset written by ``cl_compress.launch.tune``: trials per tuned strategy,
    and whether every tuned strategy had the same number.

    >>> tuning_lines({"a": {"trials": 6, "study": "s"}, "b": {"trials": 6, "study": "t"}})[-1]
    '- every tuned strategy had the same number of trials (6)'
    """
    if not tuning:
        return []
    lines = [f"- tuned on a validation split held out of the training data: `{k}` "
             f"{v.get('trials')} trials (Optuna study `{v.get('study')}`, objective "
             f"{v.get('objective', 'avg_acc')})" for k, v in sorted(tuning.items())]
    counts = sorted({v.get("trials") for v in tuning.values()}, key=str)
    lines.append(f"- every tuned strategy had the same number of trials ({counts[0]})" if len(counts) == 1
                 else f"- **unequal tuning**: trials per strategy {counts}")
    return lines


def portable_text(text: str, root: str | Path) -> str:
    """``text`` with this machine's absolute paths made relative: the sweep directory
    ``root`` relative to the working directory (or its name when outside it) and the
    working directory itself dropped, so a committed report names no machine path.

    >>> import os
    >>> portable_text(f"cd {os.getcwd()}/runs/x && ls", "runs/x")
    'cd runs/x && ls'
    """
    cwd = os.getcwd()
    root_abs = os.path.abspath(root)
    rel = os.path.relpath(root_abs, cwd) if root_abs.startswith(cwd + os.sep) else Path(root_abs).name
    return text.replace(root_abs, rel).replace(cwd + os.sep, "")




def _mean(xs: list[float]) -> float:
    return sum(xs) / len(xs) if xs else math.nan


def _later(st: dict[str, Any], key: str) -> float | None:
    """Mean of ``alpha`` or ``removed`` over a layer's projections after the first of its
    task (from the recorded mean, count and first value); ``None`` with one projection."""
    n = int(st.get("count") or 0)
    if n < 2:
        return None
    return (st[f"{key}_mean"] * n - st[f"{key}_first"]) / (n - 1)


def lrpet_energy_rows(groups: dict[str, list[Run]]) -> dict[str, dict[str, Any]]:
    """Per LRPET label, per task: the energy-transfer figures of its projections
    (results.json ``strategy_extra.projection_stats``), pooled over body layers and seeds:
    projections per layer, alpha of the first projection and mean alpha of the later ones,
    removed energy (fraction) of the first projection, mean of the later ones, the largest
    of any projection and the last one. ``tasks`` is empty for runs that recorded none
    (older runs, ``mode=truncate``)."""
    out: dict[str, dict[str, Any]] = {}
    for label, rs in groups.items():
        if rs[0].strategy != "lrpet":
            continue
        per: dict[int, list[dict[str, Any]]] = {}
        for r in rs:
            for t, layers in ((r.res.get("strategy_extra") or {}).get("projection_stats") or {}).items():
                per.setdefault(int(t), []).extend(layers.values())
        tasks = {}
        for t, sts in sorted(per.items()):
            later_a = [v for v in (_later(s, "alpha") for s in sts) if v is not None]
            later_r = [v for v in (_later(s, "removed") for s in sts) if v is not None]
            tasks[t] = {"projections": _mean([s["count"] for s in sts]),
                        "alpha_first": _mean([s["alpha_first"] for s in sts]),
                        "alpha_later": _mean(later_a) if later_a else None,
                        "alpha_max": max(s["alpha_max"] for s in sts),
                        "removed_first": _mean([s["removed_first"] for s in sts]),
                        "removed_later": _mean(later_r) if later_r else None,
                        "removed_max": max(s["removed_max"] for s in sts),
                        "removed_last": _mean([s["removed_last"] for s in sts])}
        x = rs[0].res.get("strategy_extra") or {}
        out[label] = {"seeds": len(rs), "sharing": x.get("sharing", "residual (not recorded)"),
                      "energy_transfer": rs[0].config.get("energy_transfer"),
                      "mode": rs[0].config.get("mode"), "tasks": tasks}
    return out


def lrpet_energy_markdown(groups: dict[str, list[Run]]) -> str | None:
    """The "LRPET energy transfer" section of a benchmark: per LRPET variant and task, how
    much energy its projections cut and by how much the kept energy was scaled (alpha), the
    first projection of a task apart from the later ones, and a line saying whether energy
    transfer still acts after task 0. ``None`` when the benchmark has no LRPET run."""
    rows = lrpet_energy_rows(groups)
    if not rows:
        return None

    def pct(v: float | None) -> str:
        return "–" if v is None else f"{100 * v:.2f}"

    def num(v: float | None) -> str:
        return "–" if v is None else f"{v:.4f}"

    lines = ["Per task, pooled over body layers and seeds (results.json "
             "`strategy_extra.projection_stats`): removed = share of a layer's (BN-rectified) "
             "weight energy in the cut tail at a projection; α = factor the kept energy is scaled "
             "by (1 without energy transfer). \"first\" is a task's first projection (of a fresh or "
             "re-initialised weight), \"later\" the mean over its other projections; max over "
             "every projection, layer and seed.", ""]
    for label, g in rows.items():
        head = (f"`{label}` ({g['seeds']} seed(s); sharing {g['sharing']}, energy_transfer "
                f"{g['energy_transfer']}, mode {g['mode']})")
        if not g["tasks"]:
            lines += [f"- {head}: no projection recorded (a run before `projection_stats`, or a "
                      "mode without LRPET projections).", ""]
            continue
        lines += [f"{head}:", "", "| task | projections/layer | α first | α later (mean) | α max "
                  "| removed first % | removed later (mean) % | removed max % | removed last % |",
                  "|" + "---|" * 9]
        for t, v in g["tasks"].items():
            lines.append(f"| {t} | {v['projections']:.1f} | {num(v['alpha_first'])} | "
                         f"{num(v['alpha_later'])} | {num(v['alpha_max'])} | "
                         f"{pct(v['removed_first'])} | {pct(v['removed_later'])} | "
                         f"{pct(v['removed_max'])} | {pct(v['removed_last'])} |")
        later = [v for t, v in g["tasks"].items() if t > 0]
        if 0 in g["tasks"] and later:
            t0 = g["tasks"][0]
            lines += ["", f"After task 0: α at most {max(v['alpha_max'] for v in later):.4f} and "
                      f"at most {100 * max(v['removed_max'] for v in later):.2f} % of the energy "
                      f"removed by one projection (task 0: α up to {t0['alpha_max']:.4f}, up to "
                      f"{100 * t0['removed_max']:.2f} %)."]
        lines.append("")
    return "\n".join(lines).rstrip()


def _capacity(r: Run) -> dict[int, dict[str, Any]]:
    """Capacity at each task's start of an Ada-QPacknet run: results.json
    ``strategy_extra.capacity``, else the per-task ``compress/usable_positions/task_<t>`` and
    ``compress/free_bits/task_<t>`` rows of its metrics.csv; empty for runs with neither."""
    cap = (r.res.get("strategy_extra") or {}).get("capacity")
    if isinstance(cap, dict) and cap:
        return {int(t): v for t, v in cap.items()}
    out: dict[int, dict[str, Any]] = {}
    for kind, key in (("usable_positions", "usable_positions"), ("free_bits", "free_bits")):
        for name, vals in (r.per_task.get(kind) or {}).items():
            if name.startswith("task_"):
                for t, v in vals.items():
                    out.setdefault(t, {})[key] = v
    return out


def capacity_rows(groups: dict[str, list[Run]]) -> dict[str, dict[str, Any]]:
    """Per Ada-QPacknet label: its capacity mode and, per task, the usable weight positions
    and free bits (fractions) when the task started, mean over seeds (``None`` if not
    recorded)."""
    out: dict[str, dict[str, Any]] = {}
    for label, rs in groups.items():
        if rs[0].strategy != "ada_qpacknet":
            continue
        caps = [_capacity(r) for r in rs]
        tasks = sorted({t for c in caps for t in c})
        per = {}
        for t in tasks:
            per[t] = {}
            for key in ("usable_positions", "free_bits"):
                vals = [c[t][key] for c in caps if t in c and c[t].get(key) is not None]
                per[t][key] = _mean(vals) if vals else None
        reserve = {c[t].get("reserve_bits") for c in caps for t in c} - {None}
        x = rs[0].res.get("strategy_extra") or {}
        mode = x.get("capacity_mode") or rs[0].config.get("capacity") or "exclusive (not recorded)"
        out[label] = {"seeds": len(rs), "capacity": mode,
                      "reserve_bits": sorted(reserve), "tasks": per}
    return out


def capacity_markdown(groups: dict[str, list[Run]]) -> str | None:
    """The "Ada-QPacknet capacity" section of a benchmark: per variant (``shared_bits`` or
    ``exclusive``), the usable weight positions and free bits at each task's start, in %.
    ``None`` when the benchmark has no Ada-QPacknet run."""
    rows = capacity_rows(groups)
    if not rows:
        return None
    n = max((len(g["tasks"]) for g in rows.values()), default=0)
    lines = ["At each task's start, mean over seeds (results.json `strategy_extra.capacity`, else "
             "metrics.csv `compress/usable_positions|free_bits/task_<t>`): usable positions = "
             "share of body weight positions the task may claim; free bits = share of the "
             "body's 32 bits per position not holding a stored code.", ""]
    head = ["variant", "capacity", "figure"] + [f"task {t}" for t in range(n)]
    lines += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for label, g in rows.items():
        if not g["tasks"]:
            lines.append(f"| `{label}` | {g['capacity']} | not recorded |" + " – |" * n)
            continue
        mode = g["capacity"] + (f" (reserve {', '.join(map(str, g['reserve_bits']))} bits)"
                                if g["reserve_bits"] else "")
        for i, (key, name) in enumerate((("usable_positions", "usable positions %"),
                                         ("free_bits", "free bits %"))):
            cells = [f"`{label}`" if i == 0 else "", mode if i == 0 else "", name]
            for t in range(n):
                v = g["tasks"].get(t, {}).get(key)
                cells.append("–" if v is None else f"{100 * v:.1f}")
            lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)
