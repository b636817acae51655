"""Fusion heads (:mod:`utils.models.fusion`) and losses (:mod:`utils.models.losses`)."""

from .fusion import HEADS, EarlyFusion, HeadConfig, LateFusion, build_head, head_modalities

__all__ = ["HEADS", "EarlyFusion", "HeadConfig", "LateFusion", "build_head", "head_modalities"]
