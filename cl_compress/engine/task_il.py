"""Task-IL accuracy of a shared-head (class-IL) model: its logits cut to each task's classes,
the task id given. Lets a class-IL run of naive report the same task-IL figures as the
strategies that answer under a task context (:mod:`cl_compress.tracking.keys`)."""

from __future__ import annotations

import torch

from cl_compress.benchmarks import Experience


@torch.no_grad()
def masked_accuracy(model: torch.nn.Module, exp: Experience, task: int, batch_size: int) -> float:
    """Accuracy on ``exp``'s test set when the model answers among ``exp.classes`` only
    (global labels, one shared head)."""
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    classes = torch.as_tensor(list(exp.classes), device=device)
    lookup = torch.full((int(classes.max()) + 1,), -1, dtype=torch.long, device=device)
    lookup[classes] = torch.arange(len(classes), device=device)
    correct = 0
    for i in range(0, exp.test_x.shape[0], batch_size):
        xb = exp.test_x[i:i + batch_size].to(device)
        yb = exp.test_y[i:i + batch_size].to(device)
        logits = model(xb, task)[:, classes]
        correct += int((logits.argmax(1) == lookup[yb]).sum())
    model.train(was_training)
    return correct / max(1, int(exp.test_x.shape[0]))


def masked_task_il_row(model: torch.nn.Module, experiences: list[Experience], t: int,
                       batch_size: int) -> list[float]:
    """Task-IL accuracy on every seen task ``0..t`` after task ``t``."""
    return [masked_accuracy(model, experiences[j], j, batch_size) for j in range(t + 1)]
