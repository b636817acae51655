"""Modality alignment maths: measure the gap, close it post hoc, or learn a unified space.

- :mod:`utils.align.gap`          modality gap, matched/unmatched similarity, linear CKA, PCA variance
- :mod:`utils.align.posthoc`      centroid shift (lambda), mean centring, Procrustes, CCA, common-dim maps
- :mod:`utils.align.contrastive`  InfoNCE losses (torch nn.Modules), duplicate-aware
- :mod:`utils.align.unified`      one projection per modality into a shared space, trained with InfoNCE

The study that fits on train, trains heads and builds tables (``compare_alignments``, ``lambda_sweep``, ...)
is an experiment step: :mod:`utils.experiment.alignment`.
"""

from .gap import (
    centroid_gap_vector, gap_report, l2_normalize, linear_cka, modality_gap, pair_similarity, pairwise_gap_table,
    pca_variance,
)
from .posthoc import (
    ALIGNERS, Aligner, CCAAlign, CentroidShift, CommonDim, MeanCentering, Procrustes, make_aligner, orthogonal_procrustes,
)

__all__ = [
    "ALIGNERS", "Aligner", "CCAAlign", "CentroidShift", "CommonDim", "MeanCentering", "Procrustes", "UnifiedConfig",
    "centroid_gap_vector", "fit_unified", "gap_report", "l2_normalize", "linear_cka", "make_aligner", "modality_gap",
    "orthogonal_procrustes", "pair_similarity", "pairwise_gap_table", "pca_variance", "project", "synthetic_modality",
]

UNIFIED = ("UnifiedConfig", "fit_unified", "project", "synthetic_modality")  # imported on first use: they need torch


def __getattr__(name: str):
    if name in UNIFIED:
        from . import unified

        return getattr(unified, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
