"""The engine: the task loop, the LightningModule, evaluation metrics, FLOPs, task inference, progress."""
