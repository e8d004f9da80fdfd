"""Launch a strategy comparison: one Hydra multirun per benchmark over strategies × seeds
(plus named variants), every run in one sweep directory and one W&B group, then the report.

    python -m cl_compress.sweep [--preset cpu] [--benchmarks "split_fmnist permuted_fmnist"]
        [--strategies "packnet lrpet"] [--seeds "0 1 2"] [--dir DIR] [--out DIR] [--dry-run]
        [hydra overrides for every run, e.g. train.epochs=1]

Default: every registered strategy (``builtin_names()``), seeds 0 1 2, split_fmnist. A preset
(``experiments/presets/<name>.yaml``, see experiments/README.md) names the benchmarks, seeds,
shared overrides, per-strategy overrides and variants (e.g. LRPET's truncate baseline).
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import re
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import yaml

from .errors import ConfigError
from .io import write_json

PRESET_DIR = Path(__file__).resolve().parents[1] / "experiments" / "presets"
PRESET_KEYS = {"description", "target", "benchmarks", "strategies", "seeds", "overrides",
               "benchmark_overrides", "strategy_overrides", "variants", "out"}
REPORT_FILES = ("report.md", "runs.csv", "summary.json", "sweep.json")


def load_preset(name: str | None) -> dict[str, Any]:
    """A preset by name (``experiments/presets/<name>.yaml``) or path; ``{}`` for none."""
    if not name:
        return {}
    path = Path(name)
    if not path.is_file():
        path = PRESET_DIR / f"{name}.yaml"
    if not path.is_file():
        known = sorted(p.stem for p in PRESET_DIR.glob("*.yaml"))
        raise ConfigError(f"unknown preset {name!r}; choose one of {known} or give a YAML path")
    data = yaml.safe_load(path.read_text()) or {}
    unknown = sorted(set(data) - PRESET_KEYS)
    if unknown:
        raise ConfigError(f"preset {path} has unknown key(s) {unknown}; valid: {sorted(PRESET_KEYS)}")
    return data | {"preset": path.stem}


def merge_overrides(*groups: list[str]) -> list[str]:
    """Concatenate Hydra overrides; a later ``key=value`` replaces an earlier one for the same
    key (Hydra itself rejects a key given twice)."""
    out: dict[str, str] = {}
    for group in groups:
        for ov in group:
            out[ov.split("=", 1)[0].lstrip("+~")] = ov
    return list(out.values())


def _scenario(overrides: list[str]) -> str:
    for ov in overrides:
        if ov.split("=", 1)[0].lstrip("+") == "benchmark.scenario":
            return ov.split("=", 1)[1]
    return "task"


def plan(preset: dict[str, Any], strategies: list[str], seeds: list[int], benchmarks: list[str],
         name: str, sweep_dir: Path, extra: list[str]) -> tuple[list[list[str]], list[str]]:
    """The ``python -m cl_compress.train`` argument lists of the sweep, and skip notes.

    Per benchmark: one multirun over the strategies without own overrides, one per strategy
    with overrides, one per variant (written under ``<benchmark>-<scenario>/<variant>/s<seed>``).
    """
    from .strategies import get_strategy

    jobs, notes = [], []
    seed_arg = f"seed={','.join(str(s) for s in seeds)}"
    per_strategy = preset.get("strategy_overrides") or {}
    for bench in benchmarks:
        common = merge_overrides(
            [f"benchmark={bench}", "trainer.progress_bar=false"], preset.get("overrides") or [],
            (preset.get("benchmark_overrides") or {}).get(bench, []), extra,
            [f"logger.group={name}", f"hydra.sweep.dir={sweep_dir}"])
        scenario = _scenario(common)
        usable = []
        for s in strategies:
            if scenario in get_strategy(s).scenarios:
                usable.append(s)
            else:
                notes.append(f"{s} skipped on {bench}: it supports {get_strategy(s).scenarios}, "
                             f"not the {scenario}-incremental scenario")
        plain = [s for s in usable if s not in per_strategy]
        if plain:
            jobs.append(["-m", f"strategy={','.join(plain)}", seed_arg, *common])
        for s in usable:
            if s in per_strategy:
                jobs.append(["-m", f"strategy={s}", seed_arg, *merge_overrides(common, per_strategy[s])])
        for label, v in (preset.get("variants") or {}).items():
            if v["strategy"] in usable:
                sub = f"hydra.sweep.subdir=${{benchmark.name}}-${{benchmark.scenario}}/{label}/s${{seed}}"
                jobs.append(["-m", f"strategy={v['strategy']}", seed_arg, *merge_overrides(
                    common, per_strategy.get(v["strategy"], []), v.get("overrides") or [], [sub])])
    return jobs, notes


def machine() -> str:
    """A one-line description of this machine (CPU cores, GPU)."""
    import torch

    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    return (f"{platform.machine()} {platform.system()}, {os.cpu_count()} CPU cores, {gpu}, "
            f"Python {platform.python_version()}, torch {torch.__version__}, "
            f"load average {os.getloadavg()[0]:.1f} at the start")


def copy_report(sweep_dir: Path, out: Path) -> None:
    """Copy report.md, its PNGs and tables to ``out``; the files of a previous report there
    (the PNGs its report.md links, and the tables) are removed first, nothing else."""
    out.mkdir(parents=True, exist_ok=True)
    old_md = out / "report.md"
    linked = re.findall(r"\]\(([^)/]+\.png)\)", old_md.read_text()) if old_md.is_file() else []
    for old in [*(out / f for f in linked), *(out / f for f in REPORT_FILES)]:
        if old.is_file():
            old.unlink()
    for f in [*sweep_dir.glob("*.png"), *(sweep_dir / f for f in REPORT_FILES)]:
        if f.is_file():
            shutil.copy2(f, out / f.name)


def _words(text: str | None) -> list[str] | None:
    return None if text is None else text.replace(",", " ").split()


def main(argv: list[str] | None = None) -> int:
    from .report import write_report
    from .strategies import builtin_names

    p = argparse.ArgumentParser(prog="python -m cl_compress.sweep", description=__doc__.split("\n")[0])
    p.add_argument("--preset", help="experiments/presets/<name>.yaml (or a path)")
    p.add_argument("--benchmarks", help="space-separated benchmark names")
    p.add_argument("--strategies", help="space-separated strategy names (default: all registered)")
    p.add_argument("--seeds", help="space-separated seeds (default: 0 1 2)")
    p.add_argument("--dir", help="sweep directory (default: runs/compare/<preset>-<time>)")
    p.add_argument("--out", help="also copy the report there (default: the preset's `out`)")
    p.add_argument("--dry-run", action="store_true", help="print the multirun commands only")
    args, extra = p.parse_known_args(argv)
    try:
        preset = load_preset(args.preset)
        known = builtin_names()
        want = _words(args.strategies) or preset.get("strategies") or "all"
        strategies = known if want == "all" else list(want)
        bad = sorted(set(strategies) - set(known))
        if bad:
            raise ConfigError(f"unknown strategies {bad}; registered: {known}")
        seeds = [int(s) for s in (_words(args.seeds) or preset.get("seeds") or [0, 1, 2])]
        benchmarks = _words(args.benchmarks) or preset.get("benchmarks") or ["split_fmnist"]
        stamp = dt.datetime.now()
        name = f"{preset.get('preset', 'compare')}-{stamp:%Y%m%d-%H%M%S}"
        sweep_dir = Path(args.dir or Path("runs") / "compare" / name).resolve()
        if args.dir:
            name = sweep_dir.name
        jobs, notes = plan(preset, strategies, seeds, benchmarks, name, sweep_dir, extra)
    except (ConfigError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    cmds = [[sys.executable, "-m", "cl_compress.train", *j] for j in jobs]
    if args.dry_run:
        print("\n".join(shlex.join(c) for c in cmds))
        return 0
    sweep_dir.mkdir(parents=True, exist_ok=True)
    if not args.dir:
        latest = sweep_dir.parent / "latest"
        if latest.is_symlink() or not latest.exists():
            latest.unlink(missing_ok=True)
            latest.symlink_to(sweep_dir.name)
    meta = {"name": name, "sweep_dir": str(sweep_dir), "preset": preset.get("preset"),
            "description": preset.get("description"), "target": preset.get("target"),
            "command": shlex.join(["python", "-m", "cl_compress.sweep", *(argv or sys.argv[1:])]),
            "date": stamp.isoformat(timespec="seconds"), "machine": machine(),
            "benchmarks": benchmarks, "strategies": strategies, "seeds": seeds, "notes": notes,
            "jobs": [{"args": j, "rc": None, "seconds": None} for j in jobs]}
    t_all = time.perf_counter()
    for job, cmd in zip(meta["jobs"], cmds):
        write_json(sweep_dir / "sweep.json", meta)
        print("+ " + shlex.join(cmd), flush=True)
        t0 = time.perf_counter()
        job["rc"] = subprocess.run(cmd).returncode
        job["seconds"] = round(time.perf_counter() - t0, 1)
    meta["total_seconds"] = round(time.perf_counter() - t_all, 1)
    write_json(sweep_dir / "sweep.json", meta)
    report = write_report(sweep_dir)
    out = args.out or preset.get("out")
    if out:
        copy_report(sweep_dir, Path(out))
    failed = [j for j in meta["jobs"] if j["rc"] != 0]
    print(f"\nsweep: {sweep_dir} ({meta['total_seconds']:.0f} s, {len(failed)} failed multirun(s))\n"
          f"report: {report}" + (f"\ncopied to: {out}" if out else ""))
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
