"""Compose the Hydra config in-process: the one place that turns overrides into the plain
dict ``python -m cl_compress.train <overrides>`` runs with (used by evaluate_artifact, sweep, tune,
the experiment scripts and the tests).

Imports Hydra and OmegaConf only (no torch, no Lightning)."""

from __future__ import annotations

from typing import Any

CONFIG_MODULE = "cl_compress.configs"


def compose_config(overrides: list[str] | None = None) -> dict[str, Any]:
    """The resolved config that ``python -m cl_compress.train <overrides>`` would use."""
    from hydra import compose, initialize_config_module
    from omegaconf import OmegaConf

    with initialize_config_module(config_module=CONFIG_MODULE, version_base=None):
        cfg = compose(config_name="train", overrides=list(overrides or []))
    out = OmegaConf.to_container(cfg, resolve=False)
    out.pop("hydra", None)
    return OmegaConf.to_container(OmegaConf.create(out), resolve=True)  # type: ignore[return-value]
