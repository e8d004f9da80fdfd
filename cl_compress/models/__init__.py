"""Backbones and the multi-head continual model."""

from cl_compress.models.backbones import BACKBONES, build_backbone
from cl_compress.models.multihead import ContinualModel, broadcast_norm_buffers

__all__ = ["BACKBONES", "ContinualModel", "broadcast_norm_buffers", "build_backbone"]
