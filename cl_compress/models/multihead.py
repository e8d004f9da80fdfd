"""The continual model: one shared body and one head per task (or one shared head)."""

from __future__ import annotations

import torch
from torch import nn


class ContinualModel(nn.Module):
    """Body + heads. Task-incremental: head ``t`` answers for task ``t``.

    Class-incremental: a single head over all classes (``multi_head=False``).
    All heads are created up front (sizes are known from the stream), which keeps
    parameter sets identical across DDP ranks and makes checkpoints shape-stable.

    ``extra_outputs`` adds outputs to every head beyond its task's classes: the "not mine"
    logit of class-incremental task inference (:mod:`cl_compress.engine.task_inference`); the
    class logits are always the first ``head_sizes[t]`` outputs. ``rotations`` > 1 gives
    every head one output per (rotation, class) pair, rotation-major (output ``k * n + c``:
    class ``c`` seen rotated by ``k`` quarter turns), CLOM-style; the first ``n`` outputs
    are still the classes of upright inputs.
    """

    def __init__(self, body: nn.Module, feat_dim: int, head_sizes: list[int], multi_head: bool,
                 extra_outputs: int = 0, rotations: int = 1):
        super().__init__()
        self.body = body
        self.feat_dim = feat_dim
        self.multi_head = multi_head
        self.extra_outputs = int(extra_outputs)
        self.rotations = int(rotations)
        sizes = head_sizes if multi_head else head_sizes[:1]
        self.heads = nn.ModuleList(nn.Linear(feat_dim, n * self.rotations + self.extra_outputs)
                                   for n in sizes)

    def head_index(self, task: int) -> int:
        return task if self.multi_head else 0

    def head(self, task: int) -> nn.Linear:
        return self.heads[self.head_index(task)]

    def n_classes(self, task: int) -> int:
        """Class outputs of ``task``'s head (its outputs less the extra ones)."""
        return (self.head(task).out_features - self.extra_outputs) // self.rotations

    def forward(self, x: torch.Tensor, task: int) -> torch.Tensor:
        return self.head(task)(self.body(x))

    def set_trainable_heads(self, task: int) -> None:
        """Only the head used by ``task`` trains; every other head is frozen."""
        for i, h in enumerate(self.heads):
            h.requires_grad_(i == self.head_index(task))


def broadcast_norm_buffers(module: torch.nn.Module) -> bool:
    """Under DDP (2+ ranks), give every rank rank 0's normalisation buffers (BatchNorm running
    statistics and counters); a no-op otherwise. DDP copies them from rank 0 before each
    forward, but the last forward's update is each rank's own: anything computed from them
    between forwards (the end of a fit, LRPET's BN-rectified projection) must first agree.
    Buffers off the backend's device (Lightning moves the model to the CPU after each fit; NCCL
    moves CUDA tensors only) travel through a staging copy on the current CUDA device.
    Returns whether a broadcast happened."""
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1):
        return False
    nccl = str(dist.get_backend()).lower() == "nccl"
    with torch.no_grad():  # BatchNorm buffers only: any other difference stays visible
        for m in module.modules():
            if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
                for buf in m.buffers():
                    if nccl and buf.device.type != "cuda":
                        staged = buf.to(torch.device("cuda", torch.cuda.current_device()))
                        dist.broadcast(staged, src=0)
                        buf.copy_(staged)
                    else:
                        dist.broadcast(buf, src=0)
    return True
