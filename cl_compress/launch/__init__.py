"""Launching many runs: comparison sweeps (Hydra launchers), Optuna tuning, shipped presets."""
