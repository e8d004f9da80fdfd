"""A run directory and its safety: lock, checkpoint and resume, status, preemption, atomic io,
finite checks."""
