"""Inference cost per task: forward FLOPs of one sample, counted by PyTorch's own counter.

``torch.utils.flop_counter.FlopCounterMode`` counts matrix products and convolutions
(2 FLOPs per multiply-accumulate: FLOPs, not MACs); element-wise work (bias, activations,
normalisation, pooling) is not counted. The model is counted as it answers for task ``t``
(inside ``strategy.task_context(t)``), in the form a deployed model would run:

- dense layers (naive, individual, PackNet, Ada-QPacknet) as dense products. PackNet's
  masked weights are zeros inside a dense matrix: dense kernels do not skip them, so their
  FLOPs equal the dense network's; ``nonzero_weights_per_task`` gives the weights a
  sparse kernel would need.
- factorised layers, which give their factors through a ``thin_factors()`` method (CACL's
  ``N·diag|sigma|·C`` with the task's active rank; LRPET's stored per-task factors
  ``sum_{i<=t} U_i V_i``, stacked into one rank-``(t+1)k`` pair, or task ``t``'s own pair
  under ``sharing=independent``) as two
  thin products (a ``r``-channel conv then a 1x1 conv, or two linear maps), or as one dense
  product when that is cheaper (``r·(fan_in + out) >= fan_in·out``): a deployed model would
  multiply the factors out once. The thin forward is checked against the model's own output
  in ``tests/test_flops.py``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.flop_counter import FlopCounterMode

NOTE = ("forward FLOPs of one test sample (2 per multiply-accumulate; matmul/conv only, "
        "torch.utils.flop_counter), factorised layers as thin products when cheaper, masked "
        "(PackNet/Ada) weights as dense products")


def _factors(m: nn.Module) -> tuple[Tensor, Tensor, Tensor | None, dict | None] | None:
    """(U, V, bias, conv args) of a factorised layer as it answers now (its ``thin_factors``:
    CACL's ``SVDFactorized``, LRPET's ``TaskResidualLayer``), else None."""
    thin = getattr(m, "thin_factors", None)
    return thin() if callable(thin) else None


def _thin_forward(u: Tensor, v: Tensor, b: Tensor | None, conv: dict | None):
    out, r = u.shape
    fan = v.shape[1]
    if r * (fan + out) >= fan * out:  # one dense product is cheaper: multiply out once
        w = (u @ v).detach()
        if conv is None:
            return lambda x: F.linear(x, w, b)
        w = w.reshape(out, *conv["kernel"])
        return lambda x: F.conv2d(x, w, b, conv["stride"], conv["padding"], conv["dilation"])
    if conv is None:
        return lambda x: F.linear(F.linear(x, v), u, b)
    v4 = v.reshape(r, *conv["kernel"])
    u4 = u.reshape(out, r, 1, 1)
    return lambda x: F.conv2d(F.conv2d(x, v4, None, conv["stride"], conv["padding"],
                                       conv["dilation"]), u4, b)


@contextlib.contextmanager
def deployed(model: nn.Module) -> Iterator[None]:
    """Factorised layers run as thin products (or one precomputed dense product when that is
    cheaper) instead of rebuilding their dense weight every forward."""
    patched = []
    with torch.no_grad():
        for m in model.modules():
            f = _factors(m)
            if f is not None:
                m.forward = _thin_forward(*f)  # instance attribute shadows the method
                patched.append(m)
    try:
        yield
    finally:
        for m in patched:
            del m.forward


def nonzero_weights(model: nn.Module, task: int) -> int:
    """Nonzero entries of the weights answering for ``task`` (body + head ``task``): dense
    conv/linear weights, or the factors of a factorised layer (inside its task context)."""
    count = 0
    head = model.head(task) if hasattr(model, "head") else None
    body = getattr(model, "body", model)
    modules = list(body.modules()) + (list(head.modules()) if head is not None else [])
    with torch.no_grad():
        for m in modules:
            f = _factors(m)
            if f is not None:
                count += int((f[0] != 0).sum()) + int((f[1] != 0).sum())
            elif isinstance(m, nn.Linear | nn.modules.conv._ConvNd):
                count += int((m.weight != 0).sum())
    return count


@torch.no_grad()
def forward_flops(model: nn.Module, x: Tensor, task: int) -> int:
    """FLOPs of ``model(x, task)`` (deployed form) counted by ``FlopCounterMode``."""
    was = model.training
    model.eval()
    try:
        with deployed(model), FlopCounterMode(display=False) as counter:
            model(x, task)
    finally:
        model.train(was)
    return int(counter.get_total_flops())


def flops_per_task(model: nn.Module, strategy: Any, inputs: list[Tensor]) -> dict[str, Any]:
    """Per task ``t``: FLOPs of one sample ``inputs[t][:1]`` and the nonzero weights, with the
    model as it answers for ``t``."""
    device = next(model.parameters()).device
    flops, nonzero = [], []
    for t, x in enumerate(inputs):
        with strategy.task_context(t):
            flops.append(forward_flops(model, x[:1].to(device), t))
            nonzero.append(nonzero_weights(model, t))
    return {"flops_per_task": flops, "nonzero_weights_per_task": nonzero, "unit": "FLOPs",
            "note": NOTE}
