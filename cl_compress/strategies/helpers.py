"""State helpers shared by the strategies (public: plugins use them too).

What a task needs besides the shared weights, and how it is stored:

- :func:`clone_state`, :func:`latest`: per-task dicts of tensors; a state stored once (by
  task 0) answers for every later task.
- Normalisation layers (BatchNorm, GroupNorm, LayerNorm): :func:`norm_layers` finds them,
  :func:`norm_state` copies what a task needs of them (affine parameters and/or running
  statistics), :func:`load_norm_state` writes such a copy back and :func:`swapped_norm_state`
  answers inside a ``with`` block with a task's state and restores the live one after.
  Every strategy keeps its per-task copies as ``self.norm_states: dict[int, dict[str, Tensor]]``.
- Task heads: :func:`head_states` (state dicts of heads ``0..T-1``), :func:`load_head_states`
  (their inverse, also reading the flat ``{"<task>.<key>": tensor}`` form of older artifacts)
  and :func:`head_params` (what they count in ``compression_stats``).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping
from typing import Any

import torch
from torch import Tensor, nn

from cl_compress.models import ContinualModel

NORMS = (nn.modules.batchnorm._NormBase, nn.GroupNorm, nn.LayerNorm)
RUNNING = ("running_mean", "running_var")


def clone_state(tensors: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """A detached copy of every tensor of ``tensors``."""
    return {k: v.detach().clone() for k, v in tensors.items()}


def latest(states: Mapping[int, Mapping[str, Tensor]], task: int) -> dict[str, Tensor]:
    """The state stored by the latest task ``<= task`` (shared state is stored once, by task 0)."""
    return dict(states[max(t for t in states if t <= task)]) if any(t <= task for t in states) else {}


# --- normalisation layers -------------------------------------------------------------------
def norm_layers(root: nn.Module, prefix: str = "", types: tuple[type, ...] = NORMS) -> dict[str, nn.Module]:
    """The normalisation layers (``types``) of ``root`` by name: ``prefix`` + their path in
    ``root`` (e.g. ``norm_layers(model.body, "body.")``)."""
    return {f"{prefix}{n}": m for n, m in root.named_modules() if isinstance(m, types)}


def _norm_tensors(layers: Mapping[str, nn.Module], affine: bool, running: bool,
                  counters: bool) -> Iterator[tuple[str, Tensor]]:
    for n, m in layers.items():
        if affine:
            for k, p in m.named_parameters(recurse=False):
                yield f"{n}.{k}", p
        for k, b in m.named_buffers(recurse=False):
            if b is not None and ((running and k in RUNNING) or (counters and k == "num_batches_tracked")):
                yield f"{n}.{k}", b


def norm_state(layers: Mapping[str, nn.Module], *, affine: bool = True, running: bool = True,
               counters: bool = False) -> dict[str, Tensor]:
    """A detached copy of the state of normalisation ``layers`` (``{name: module}``, e.g. from
    :func:`norm_layers`), keyed ``"<name>.<tensor>"``: the affine parameters (``weight``,
    ``bias``) when ``affine``, the running statistics (``running_mean``, ``running_var``) when
    ``running``, BatchNorm's ``num_batches_tracked`` when ``counters``."""
    return clone_state(dict(_norm_tensors(layers, affine, running, counters)))


@torch.no_grad()
def load_norm_state(layers: Mapping[str, nn.Module], state: Mapping[str, Tensor]) -> None:
    """Write ``state`` (from :func:`norm_state` over the same names) into ``layers``, in place;
    tensors the state does not hold are left as they are; a key no layer has is a KeyError."""
    seen = set()
    for key, live in _norm_tensors(layers, True, True, True):
        if key in state:
            live.copy_(state[key])
            seen.add(key)
    if unknown := sorted(set(state) - seen):
        raise KeyError(f"normalisation state {unknown[:3]} matches no layer of {sorted(layers)[:5]}")


@contextlib.contextmanager
def swapped_norm_state(layers: Mapping[str, nn.Module], state: Mapping[str, Tensor] | None):
    """Inside the block ``layers`` hold ``state`` (a task's stored state; ``None`` or empty:
    unchanged); after it, the tensors the state replaced are restored exactly."""
    if not state:
        yield
        return
    backup = {k: v.detach().clone() for k, v in _norm_tensors(layers, True, True, True) if k in state}
    load_norm_state(layers, state)
    try:
        yield
    finally:
        load_norm_state(layers, backup)


def norm_states_from(state: Mapping[str, Any], key: str) -> dict[int, dict[str, Tensor]]:
    """``{task: state}`` from a checkpoint or artifact that holds it under ``key``, as a dict
    by task or as a list (one entry per task)."""
    if key not in state:
        raise KeyError(f"no {key!r} in the stored state")
    v = state[key]
    items = v.items() if isinstance(v, Mapping) else enumerate(v)
    return {int(t): dict(s) for t, s in items}


# --- task heads -----------------------------------------------------------------------------
def head_states(model: ContinualModel, n_tasks: int) -> list[dict[str, Tensor]]:
    """Detached CPU copies of the state dicts of heads ``0..n_tasks-1`` (the heads of the seen
    tasks; a single-head model has one)."""
    return [{k: v.detach().to("cpu", copy=True) for k, v in h.state_dict().items()}
            for h in list(model.heads)[:n_tasks]]


@torch.no_grad()
def load_head_states(model: ContinualModel, heads: list[Mapping[str, Tensor]] | Mapping[str, Tensor]) -> int:
    """Load heads ``0..T-1`` from :func:`head_states`, or from the flat ``{"<task>.<key>":
    tensor}`` form earlier artifacts hold (a ``ModuleList`` state dict); returns ``T``."""
    if isinstance(heads, Mapping):
        per: dict[int, dict[str, Tensor]] = {}
        for key, v in heads.items():
            j, k = key.split(".", 1)
            per.setdefault(int(j), {})[k] = v
        heads = [per[j] for j in sorted(per)]
    for j, state in enumerate(heads):
        model.heads[j].load_state_dict(dict(state))
    return len(heads)


def head_params(model: ContinualModel, n_tasks: int) -> int:
    """Parameters of heads ``0..n_tasks-1`` (what the heads of the seen tasks store)."""
    return sum(p.numel() for h in list(model.heads)[:n_tasks] for p in h.parameters())
