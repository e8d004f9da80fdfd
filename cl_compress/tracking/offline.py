"""Read an offline W&B run back from its ``.wandb`` file, with W&B's own record format.

W&B 0.31 no longer ships a Python reader of its transaction log (the old
``wandb.sdk.internal.datastore``); the log is a sequence of ``wandb.proto`` ``Record``
messages framed like a LevelDB log: a 7-byte header (``:W&B``, magic ``0xBEE1``, version),
then 32 KiB blocks of chunks, each ``crc32 (4) | length (2, little-endian) | type (1)``
followed by ``length`` bytes (type 1 = a whole record, 2/3/4 = first/middle/last piece).

    python -m cl_compress.tracking.offline <run_dir | offline-run-* | file.wandb>

prints a short summary (rows, keys, artifacts). Tests use :func:`read_run` to check what
was actually logged rather than what the code meant to log.
"""

from __future__ import annotations

import json
import struct
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HEADER = b":W&B"
BLOCK = 32768
CHUNK_HEADER = 7
FULL, FIRST, MIDDLE, LAST = 1, 2, 3, 4


def find_wandb_file(path: str | Path) -> Path:
    """The ``.wandb`` file of a run directory, an ``offline-run-*`` folder or the file itself."""
    p = Path(path)
    if p.is_file():
        return p
    files = sorted(p.glob("*.wandb")) or sorted(p.glob("offline-run-*/*.wandb")) or \
        sorted(p.glob("wandb/offline-run-*/*.wandb"))
    if not files:
        raise FileNotFoundError(f"no .wandb file under {p}")
    return files[-1]


def iter_records(path: str | Path):
    """Yield every ``wandb_internal_pb2.Record`` of a ``.wandb`` file, in order."""
    from wandb.proto import wandb_internal_pb2 as pb

    data = Path(path).read_bytes()
    if data[:4] != HEADER:
        raise ValueError(f"{path} is not a W&B transaction log (header {data[:4]!r})")
    pos, pending = 7, b""
    while pos + CHUNK_HEADER <= len(data):
        left = BLOCK - pos % BLOCK
        if left < CHUNK_HEADER:  # block trailer: zero padding
            pos += left
            continue
        _crc, length, kind = struct.unpack("<IHB", data[pos:pos + CHUNK_HEADER])
        if kind == 0 and length == 0:  # padding or an unfinished tail
            pos += left
            continue
        body = data[pos + CHUNK_HEADER:pos + CHUNK_HEADER + length]
        if len(body) < length:
            raise ValueError(f"{path} is truncated: a record at byte {pos} needs {length} bytes, "
                             f"{len(body)} are there (a killed run or an incomplete copy)")
        pos += CHUNK_HEADER + length
        if kind in (FULL, FIRST):
            pending = body
        else:
            pending += body
        if kind in (FULL, LAST):
            rec = pb.Record()
            try:
                rec.ParseFromString(pending)
            except Exception as e:  # protobuf's DecodeError: a damaged record
                raise ValueError(f"{path} has a damaged record before byte {pos} "
                                 f"({type(e).__name__})") from None
            yield rec
            pending = b""


@dataclass
class OfflineRun:
    """What an offline run holds: config, history rows, summary, metric definitions,
    artifacts and the run's name, group and tags."""

    name: str = ""
    group: str = ""
    tags: list[str] = field(default_factory=list)
    config: dict[str, Any] = field(default_factory=dict)
    history: list[dict[str, Any]] = field(default_factory=list)
    summary: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, dict[str, Any]] = field(default_factory=dict)
    artifacts: list[dict[str, Any]] = field(default_factory=list)
    files_dir: Path | None = None  # the run's ``files`` folder (media, tables)

    def charts(self) -> dict[str, dict[str, Any]]:
        """Custom charts (``wandb.plot.*``) by key: their panel spec."""
        return dict((self.config.get("_wandb") or {}).get("visualize") or {})

    def table(self, key: str) -> dict[str, Any]:
        """The last logged version of table ``key`` (``{"columns": [...], "data": [...]}``)."""
        rows = [r for r in self.history if f"{key}/path" in r]
        if not rows or self.files_dir is None:
            raise KeyError(f"no table {key!r} in this run")
        return json.loads((self.files_dir / rows[-1][f"{key}/path"]).read_text())

    def rows_with(self, key: str) -> list[dict[str, Any]]:
        return [r for r in self.history if key in r]


def _key(item) -> str:
    return item.key or "/".join(item.nested_key)


def _set(config: dict[str, Any], item) -> None:
    """A config update: ``key`` at the top, or ``nested_key`` as a path of dicts
    (e.g. ``_wandb`` / ``visualize`` / ``<chart key>`` for a custom chart)."""
    path = [item.key] if item.key else list(item.nested_key)
    d = config
    for part in path[:-1]:
        d = d.setdefault(part, {})
    d[path[-1]] = _value(item.value_json)


def _value(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return text


def wait_until_written(file: Path, timeout: float) -> None:
    """W&B's service process may still be writing the log when ``run.finish()`` returns (seen
    on a loaded machine): wait until it holds the run's ``exit`` record and its size has
    stopped changing, or ``timeout`` seconds have passed."""
    import time

    deadline = time.monotonic() + timeout
    size = -1
    while time.monotonic() < deadline:
        now = file.stat().st_size
        if now == size:
            try:
                if any(r.WhichOneof("record_type") == "exit" for r in iter_records(file)):
                    return
            except Exception:  # noqa: BLE001  (a half-written tail: try again)
                pass
        size = now
        time.sleep(0.5)


def read_run(path: str | Path, wait: float = 0.0) -> OfflineRun:
    """Parse an offline run (see :func:`find_wandb_file` for ``path``); ``wait`` > 0: first
    wait up to that many seconds for W&B to finish writing it (:func:`wait_until_written`)."""
    out = OfflineRun()
    file = find_wandb_file(path)
    if wait > 0:
        wait_until_written(file, wait)
    out.files_dir = file.parent / "files"
    for rec in iter_records(file):
        kind = rec.WhichOneof("record_type")
        if kind == "run":
            out.name, out.group, out.tags = rec.run.display_name, rec.run.run_group, list(rec.run.tags)
            for it in rec.run.config.update:
                _set(out.config, it)
        elif kind == "config":
            for it in rec.config.update:
                _set(out.config, it)
        elif kind == "history":
            out.history.append({_key(it): _value(it.value_json) for it in rec.history.item})
        elif kind == "summary":
            for it in rec.summary.update:
                out.summary[_key(it)] = _value(it.value_json)
        elif kind == "metric":
            m = rec.metric
            out.metrics[m.name or m.glob_name] = {"step_metric": m.step_metric}
        elif kind == "artifact":
            a = rec.artifact
            out.artifacts.append({"name": a.name, "type": a.type, "metadata": _value(a.metadata or "{}"),
                                  "files": [e.path for e in a.manifest.contents]})
    return out


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: python -m cl_compress.tracking.offline <run_dir | offline-run-* | file.wandb>",
              file=sys.stderr)
        return 2
    try:
        run = read_run(argv[0])
    except (OSError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    keys = sorted({k for r in run.history for k in r if not k.startswith("_")})
    print(f"run {run.name!r} group {run.group!r} tags {run.tags}")
    print(f"{len(run.history)} history rows; keys: {', '.join(keys)}")
    for a in run.artifacts:
        print(f"artifact {a['name']} ({a['type']}): {', '.join(a['files'])}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
