"""Class-incremental evaluation of task-isolation strategies: infer the task id at test time.

An isolation strategy (``individual``, ``packnet``, ``ada_qpacknet``, ``lrpet``, ``cacl``)
answers task ``j`` under ``strategy.task_context(j)`` with head ``j``. Under
``benchmark.scenario=class`` it is trained exactly as in the task-incremental scenario
(one head per task over the task's own classes; the task id is used during training only),
and at test time the task is inferred:

1. the whole batch is answered under every seen task's context (T forward passes of a
   batch, never T per sample);
2. each task ``j`` gets a score per input from head ``j``'s logits (``eval.task_inference``);
3. the task with the highest score is chosen, and head ``j``'s prediction is mapped to the
   global label ``classes_j[pred]``.

Scores: ``max_softmax`` (max class probability), ``entropy`` (minus the entropy of the
softmax), ``energy`` (logsumexp of the logits, i.e. minus the free energy), and
``not_mine``: log P(not "not mine"), read from an extra output of every head that is
trained with self-made negatives (``eval.negatives``) during the task's own training steps:
each training batch is doubled with transformed copies of the same images (rotations by 90,
180 or 270 degrees, 2x2 jigsaw shuffles, ...) labelled "not mine". Nothing beyond the
extra output row of each head (``feat_dim + 1`` parameters per task, counted by every
strategy's ``compression_stats`` because it is part of the head) is stored; no image is
kept. See ``docs/task_inference.md``.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from cl_compress.errors import ConfigError
from cl_compress.settings import NEGATIVES, SCORES, TaskInferenceSettings  # noqa: E402,F401  (re-exported)


# --- self-made negatives ------------------------------------------------------------------------
def _rotate(x: Tensor, gen: torch.Generator | None = None) -> Tensor:
    """Each image rotated by 90, 180 or 270 degrees (180 only when it is not square)."""
    if x.dim() < 3:
        return x.flip(-1)
    if x.shape[-1] != x.shape[-2]:
        return x.flip(-1, -2)
    k = torch.randint(1, 4, (x.shape[0],), generator=gen, device=x.device)
    out = torch.empty_like(x)
    for r in (1, 2, 3):
        sel = k == r
        if sel.any():
            out[sel] = torch.rot90(x[sel], r, dims=(-2, -1))
    return out


def _jigsaw(x: Tensor, gen: torch.Generator | None = None) -> Tensor:
    """Each image cut into 2x2 tiles that are put back in a random non-identity order."""
    if x.dim() < 3 or x.shape[-1] < 2 or x.shape[-2] < 2:
        return x.flip(-1)
    h, w = x.shape[-2] // 2 * 2, x.shape[-1] // 2 * 2
    x2 = x[..., :h, :w]
    tiles = torch.stack([x2[..., :h // 2, :w // 2], x2[..., :h // 2, w // 2:],
                         x2[..., h // 2:, :w // 2], x2[..., h // 2:, w // 2:]], 1)  # N,4,...
    n = x.shape[0]
    # a random permutation of 4 tiles per image, forced away from the identity by a shift
    perm = torch.argsort(torch.rand(n, 4, generator=gen, device=x.device), dim=1)
    ident = (perm == torch.arange(4, device=x.device)).all(1)
    perm[ident] = perm[ident].roll(1, dims=1)
    idx = perm.view(n, 4, *([1] * (tiles.dim() - 2))).expand_as(tiles)
    t = tiles.gather(1, idx)
    top = torch.cat([t[:, 0], t[:, 1]], -1)
    bottom = torch.cat([t[:, 2], t[:, 3]], -1)
    out = x.clone()
    out[..., :h, :w] = torch.cat([top, bottom], -2)
    return out


def _cutmix(x: Tensor, gen: torch.Generator | None = None) -> Tensor:
    """Each image with one half (top, bottom, left or right) taken from another image of the
    batch: chimeras of the task's own images (the batch is rolled by a random shift)."""
    if x.dim() < 3 or x.shape[0] < 2:
        return _jigsaw(x, gen)
    shift = int(torch.randint(1, x.shape[0], (1,), generator=gen))
    other = x.roll(shift, 0)
    h, w = x.shape[-2], x.shape[-1]
    rows = torch.arange(h, device=x.device).view(h, 1).expand(h, w)
    cols = torch.arange(w, device=x.device).view(1, w).expand(h, w)
    halves = torch.stack([rows < h // 2, rows >= h // 2, cols < w // 2, cols >= w // 2])
    side = torch.randint(0, 4, (x.shape[0],), generator=gen, device=x.device)
    mask = halves[side].view(x.shape[0], *([1] * (x.dim() - 3)), h, w)
    return torch.where(mask, other, x)


def _pick(views: list[Tensor], gen: torch.Generator | None) -> Tensor:
    """Per image, one of ``views`` chosen uniformly."""
    k = torch.randint(0, len(views), (views[0].shape[0],), generator=gen, device=views[0].device)
    out = views[0].clone()
    for i, v in enumerate(views[1:], 1):
        sel = k == i
        out[sel] = v[sel]
    return out


def make_negatives(x: Tensor, kind: str, gen: torch.Generator | None = None) -> Tensor:
    """Transformed copies of ``x`` that no task's head should claim (one per image)."""
    if kind == "rotate":
        return _rotate(x, gen)
    if kind == "jigsaw":
        return _jigsaw(x, gen)
    if kind == "cutmix":
        return _cutmix(x, gen)
    if kind == "all":
        return _pick([_rotate(x, gen), _jigsaw(x, gen), _cutmix(x, gen)], gen)
    if kind in ("rotate_jigsaw", "flip_jigsaw"):
        half = torch.rand(x.shape[0], generator=gen, device=x.device) < 0.5
        first = _rotate(x, gen) if kind == "rotate_jigsaw" else x.flip(-2)
        return torch.where(half.view(-1, *([1] * (x.dim() - 1))), first, _jigsaw(x, gen))
    raise ConfigError(f"unknown negatives {kind!r}; choose one of {', '.join(NEGATIVES)}")


def rotation_batch(x: Tensor, y: Tensor, n_classes: int) -> tuple[Tensor, Tensor]:
    """``x`` at 0, 1, 2 and 3 quarter turns (rotation-major) with labels ``k * n + y``."""
    xs = [x] + [torch.rot90(x, k, dims=(-2, -1)) for k in (1, 2, 3)]
    return torch.cat(xs), torch.cat([y + k * n_classes for k in range(4)])


def rotation_scores(model: Any, x: Tensor, task: int, n_classes: int) -> tuple[Tensor, Tensor]:
    """CLOM-style ensemble: the probability of (class ``c``, rotation ``k``) for ``x``
    rotated by ``k``, averaged over the 4 rotations; returns (max over classes: the task
    score, argmax: the local prediction)."""
    n = x.shape[0]
    xr, _ = rotation_batch(x, torch.zeros(n, dtype=torch.long, device=x.device), n_classes)
    p = model(xr, task).float().softmax(-1)
    s = sum(p[k * n:(k + 1) * n, k * n_classes:(k + 1) * n_classes] for k in range(4)) / 4
    return s.amax(-1), s.argmax(-1)


# --- scores ---------------------------------------------------------------------------------------
def task_scores(logits: Tensor, n_classes: int, score: str) -> Tensor:
    """How much head ``j`` claims each input (higher: more likely task ``j``).

    ``logits`` are head ``j``'s outputs: its ``n_classes`` class logits, then any extra
    ("not mine") output."""
    z = logits[:, :n_classes]
    if score == "max_softmax":
        return z.softmax(-1).amax(-1)
    if score == "entropy":
        p = z.log_softmax(-1)
        return (p.exp() * p).sum(-1)
    if score == "energy":
        return torch.logsumexp(z, -1)
    if score == "not_mine":
        if logits.shape[1] <= n_classes:
            raise ConfigError("score not_mine needs heads with a 'not mine' output (eval.negatives)")
        return torch.logsumexp(z, -1) - torch.logsumexp(logits, -1)
    raise ConfigError(f"unknown task-inference score {score!r}; choose one of {', '.join(SCORES)}")


@torch.no_grad()
def infer_tasks(model: Any, strategy: Any, x: Tensor, tasks: list[int], classes: Any,
                score: str, batch_size: int,
                norm: dict[int, tuple[float, float]] | None = None) -> tuple[Tensor, Tensor, Tensor]:
    """Answer ``x`` under every task of ``tasks``; returns (chosen task, global prediction,
    per-task scores ``[len(tasks), n]``). Task contexts are switched once per task: the
    whole of ``x`` is answered in batches under each."""
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    extra = int(getattr(model, "extra_outputs", 0))
    scores, preds = [], []
    for j in tasks:
        n_cls = model.n_classes(j) if hasattr(model, "n_classes") else model.head(j).out_features - extra
        lut = torch.as_tensor(classes[j], dtype=torch.long, device=device)
        s_j, p_j = [], []
        with strategy.task_context(j):
            for i in range(0, x.shape[0], batch_size):
                xb = x[i:i + batch_size].to(device)
                if score == "rotation":
                    s, p = rotation_scores(model, xb, j, n_cls)
                    s_j.append(s)
                    p_j.append(lut[p])
                    continue
                logits = model(xb, j).float()
                s_j.append(task_scores(logits, n_cls, score))
                p_j.append(lut[logits[:, :n_cls].argmax(-1)])
        s_cat = torch.cat(s_j)
        if norm and j in norm:  # z-score against the task's own training data
            s_cat = (s_cat - norm[j][0]) / max(norm[j][1], 1e-6)
        scores.append(s_cat)
        preds.append(torch.cat(p_j))
    model.train(was_training)
    S, P = torch.stack(scores), torch.stack(preds)
    pick = S.argmax(0)
    chosen = torch.as_tensor(tasks, device=device)[pick]
    return chosen, P.gather(0, pick.unsqueeze(0)).squeeze(0), S


def class_il_row(model: Any, strategy: Any, experiences: list[Any], t: int, score: str,
                 batch_size: int, norm: dict[int, tuple[float, float]] | None = None,
                 ) -> tuple[list[float], list[float]]:
    """After task ``t``: class-IL accuracy (task id inferred among tasks ``0..t``) and
    task-inference accuracy on the test set of every seen task."""
    classes = [list(e.classes) for e in experiences]
    xs = [experiences[j].test_x for j in range(t + 1)]
    chosen, pred, _ = infer_tasks(model, strategy, torch.cat(xs), list(range(t + 1)), classes,
                                  score, batch_size, norm)
    acc, tacc, k = [], [], 0
    for j, x in enumerate(xs):
        n = x.shape[0]
        lut = torch.as_tensor(classes[j], dtype=torch.long)
        y = lut[experiences[j].test_y.long()].to(pred.device)
        acc.append(float((pred[k:k + n] == y).float().mean()) if n else 0.0)
        tacc.append(float((chosen[k:k + n] == j).float().mean()) if n else 0.0)
        k += n
    return acc, tacc


class NegativesLoss:
    """The training loss of a class-IL run (``ContinualSystem.loss_fn``): one forward over the
    batch and as many self-made negatives (labelled with the head's last, "not mine",
    output); the loss is the batch's cross-entropy plus ``weight`` times the negatives'.
    Returns the batch's logits, the loss and how many negatives were added. Stateless: a
    search candidate's fit can share it."""

    def __init__(self, kind: str, weight: float):
        self.kind, self.weight = kind, weight

    def __call__(self, model: Any, x: Tensor, y: Tensor, task: int) -> tuple[Tensor, Tensor, int]:
        n = x.shape[0]
        if self.kind == "rotation_classes":  # every image at 4 quarter turns, one class per pair
            xr, yr = rotation_batch(x, y, model.n_classes(task))
            out = model(xr, task)
            return out[:n], F.cross_entropy(out, yr), xr.shape[0] - n
        out = model(torch.cat([x, make_negatives(x, self.kind)]), task)
        logits, neg = out[:n], out[n:]
        target = torch.full((n,), out.shape[1] - 1, dtype=torch.long, device=x.device)
        return logits, F.cross_entropy(logits, y) + self.weight * F.cross_entropy(neg, target), n


def negative_loss(model: Any, x: Tensor, task: int, kind: str,
                  gen: torch.Generator | None = None) -> Tensor:
    """Cross-entropy of head ``task`` labelling self-made negatives of ``x`` "not mine"."""
    neg = make_negatives(x, kind, gen)
    logits = model(neg, task)
    target = torch.full((neg.shape[0],), logits.shape[1] - 1, dtype=torch.long, device=x.device)
    return F.cross_entropy(logits, target)


# --- later-task negatives: refit old heads' "not mine" output --------------------------------
@torch.no_grad()
def body_features(model: Any, strategy: Any, x: Tensor, task: int, batch_size: int) -> Tensor:
    """Body features of ``x`` under task ``task``'s context (forward only, eval mode)."""
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    with strategy.task_context(task):
        out = torch.cat([model.body(x[i:i + batch_size].to(device))
                         for i in range(0, x.shape[0], batch_size)])
    model.train(was_training)
    return out


def feature_basis(feats: Tensor, energy: float) -> dict[str, Tensor]:
    """The old task's feature subspace: the fewest right singular vectors of the (uncentred)
    feature matrix that keep ``energy`` of its squared norm (GPM-style). A refit of the
    "not mine" row orthogonal to it leaves that row's output on the task's own features
    (nearly) unchanged. No image is kept."""
    _, sv, vh = torch.linalg.svd(feats.float().cpu(), full_matrices=False)
    cum = (sv ** 2).cumsum(0) / (sv ** 2).sum().clamp_min(1e-12)
    k = int((cum < energy).sum()) + 1
    return {"basis": vh[:k].t().contiguous()}  # [D, k]


def refit_not_mine(head: torch.nn.Linear, stats: dict[str, Tensor], negatives: Tensor,
                   steps: int, batch_size: int, lr: float, seed: int) -> None:
    """Refit the last ("not mine") row of an old task's ``head``; the class rows are left
    untouched, so the old task's task-IL answers do not change.

    ``negatives`` (a later task's images seen through the old task's context) are labelled
    "not mine" (cross-entropy over the head's outputs). The update of the row's weights is
    kept orthogonal to the old task's stored feature subspace (``feature_basis``) and its
    bias is fixed, so the row's output on the old task's own features barely moves (only
    through the energy left out of the subspace): the row learns what is not its task's
    without seeing its task's images again."""
    device = head.weight.device
    gen = torch.Generator().manual_seed(seed)
    U = stats["basis"].to(device)
    n_cls = head.out_features - 1
    wc, bc, b = head.weight[:-1].detach(), head.bias[:-1].detach(), head.bias[-1].detach()
    w0 = head.weight[-1].detach().clone()
    delta = torch.zeros_like(w0, requires_grad=True)
    opt = torch.optim.Adam([delta], lr=lr)
    target = torch.full((batch_size,), n_cls, dtype=torch.long, device=device)
    for _ in range(steps):
        idx = torch.randint(0, negatives.shape[0], (batch_size,), generator=gen)
        feats = negatives[idx.to(negatives.device)].to(device)
        d = delta - U @ (U.t() @ delta)
        logits = torch.cat([feats @ wc.t() + bc, (feats @ (w0 + d) + b).unsqueeze(1)], 1)
        loss = F.cross_entropy(logits, target)
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        head.weight[-1].copy_(w0 + delta - U @ (U.t() @ delta))
