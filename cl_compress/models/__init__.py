"""Backbones and the multi-head continual model."""

from .backbones import BACKBONES, build_backbone
from .multihead import ContinualModel

__all__ = ["BACKBONES", "ContinualModel", "build_backbone"]
