"""Backbones and the multi-head continual model."""

from cl_compress.models.backbones import BACKBONES, build_backbone
from cl_compress.models.multihead import ContinualModel

__all__ = ["BACKBONES", "ContinualModel", "build_backbone"]
