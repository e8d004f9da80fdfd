"""Scaffolding shared by the bench scripts (bench, bench_packnet, bench_cacl, defaults,
class_il, bench_gpu, bench_ada_qpacknet, bench_lrpet): the argument
parser with ``--out``, one run of ``cl_compress.train`` (in-process or as a command), the
command / date / machine lines of a results file, and writing that file atomically under
``experiments/results/``. What each script measures stays in the script."""

from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
import os
import platform
import shlex
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from cl_compress.compose import compose_config
from cl_compress.rundir.io import write_text

RESULTS = Path(__file__).parent / "results"
RUNS = Path("runs") / "bench"


def parser(prog: str, doc: str | None, out_default: str) -> argparse.ArgumentParser:
    """An ArgumentParser named ``python -m <prog>`` with ``--out`` (default shown)."""
    p = argparse.ArgumentParser(prog=f"python -m {prog}", description=(doc or "").split("\n")[0])
    p.add_argument("--out", default=None, help=f"Markdown file (default experiments/results/{out_default})")
    return p


def command(prog: str, argv: list[str] | None) -> str:
    """The command line that produced a result (``argv``: what ``main`` got, else sys.argv)."""
    return shlex.join(["python", "-m", prog, *(argv if argv is not None else sys.argv[1:])])


def today() -> str:
    return dt.date.today().isoformat()


def now() -> str:
    return f"{dt.datetime.now():%Y-%m-%d %H:%M}"


def machine(shared: bool = False, threads: bool = True) -> str:
    """One line: CPU, cores, GPU, torch/lightning versions, threads."""
    import lightning as L
    import torch

    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    cores = f"{os.cpu_count()} CPU cores" + (" shared with other jobs" if shared else "")
    th = f" ({torch.get_num_threads()} threads)" if threads else ""
    return (f"{platform.machine()}, {cores}, {gpu}; torch {torch.__version__}{th}, "
            f"lightning {L.__version__}, OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}")


def header(title: str, prog: str, argv: list[str] | None, *lines: str) -> str:
    """The head of a results file: title, command, date, machine, then ``lines`` as bullets."""
    bullets = [f"command: `{command(prog, argv)}`", f"date: {today()}",
               f"machine: {machine(shared=True)}", *lines]
    return f"# {title}\n\n" + "".join(f"- {b}\n" for b in bullets) + "\n"


def setup_of(res: dict[str, Any]) -> str:
    """Model and optimiser of a run, read from its results.json config (never restated by
    hand): e.g. ``mlp [256, 256], adam lr 0.001, batch 128``."""
    m, t = res["config"]["model"], res["config"]["train"]
    shape = m.get("hidden", m.get("channels", ""))
    return f"{m['name']} {shape}, {t['optimizer']} lr {t['lr']:g}, batch {t['batch_size']}"


def quiet_lightning() -> None:
    for noisy in ("lightning.pytorch", "lightning.fabric"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def run_inprocess(overrides: list[str], run_dir: str | Path,
                  on_task_end: Callable | None = None) -> dict[str, Any]:
    """``python -m cl_compress.train <overrides>`` in this process, always a fresh run into
    ``run_dir``; the results get ``wall`` and ``cpu`` seconds of the whole run."""
    from cl_compress.train import build_and_run

    run_dir = Path(run_dir)
    for f in ("checkpoint.pt", "metrics.csv"):  # a fresh run every time
        (run_dir / f).unlink(missing_ok=True)
    cfg = compose_config([*overrides, "overwrite=true"])
    t0, c0 = time.perf_counter(), time.process_time()
    res = build_and_run(cfg, run_dir, on_task_end)
    res["wall"], res["cpu"] = time.perf_counter() - t0, time.process_time() - c0
    return res


def run_cli(overrides: list[str], run_dir: str | Path) -> tuple[dict[str, Any], float]:
    """``python -m cl_compress.train <overrides>`` as its own process (what ``make exp``
    does); returns its results.json and the wall seconds. A failure exits with its stderr."""
    run_dir = Path(run_dir)
    cmd = [sys.executable, "-m", "cl_compress.train", "logger=none", "trainer.progress_bar=false",
           f"hydra.run.dir={run_dir}", *overrides]
    t0 = time.perf_counter()
    p = subprocess.run(cmd, capture_output=True, text=True)
    if p.returncode != 0:
        raise SystemExit(f"{shlex.join(cmd)} failed ({p.returncode}):\n{p.stderr[-2000:]}")
    return json.loads((run_dir / "results.json").read_text()), time.perf_counter() - t0


def write_results(text: str, out: str | None, default_name: str) -> Path:
    """Write a results file atomically (``out``, else ``experiments/results/<default_name>``)
    and say where; the text ends with one newline."""
    path = Path(out) if out else RESULTS / default_name
    write_text(path, text.rstrip("\n") + "\n")
    print(f"\nwritten to {path}")
    return path
