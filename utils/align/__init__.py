"""Modality alignment: measure the gap, close it post hoc, or learn a unified space.

- :mod:`utils.align.gap`          modality gap, matched/unmatched similarity, linear CKA, PCA variance
- :mod:`utils.align.posthoc`      centroid shift (lambda), mean centring, Procrustes, CCA, common-dim maps
- :mod:`utils.align.study`        notebook steps: fit on train, apply to val/test, gap and heads before/after
- :mod:`utils.align.contrastive`  InfoNCE losses (torch nn.Modules)
- :mod:`utils.align.unified`      one projection per modality into a shared space, trained with InfoNCE

torch is imported only by ``contrastive`` and inside ``unified``'s functions.
"""

from .gap import centroid_gap_vector, gap_report, l2_normalize, linear_cka, modality_gap, pair_similarity, pca_variance
from .posthoc import (
    ALIGNERS, Aligner, CCAAlign, CentroidShift, CommonDim, MeanCentering, Procrustes, make_aligner, orthogonal_procrustes,
)
from .study import (
    align_embeddings, alignment_table, compare_alignments, gap_table, lambda_sweep, pairwise_gap_table, save_alignment_results,
)
from .unified import UnifiedConfig, fit_unified, project, synthetic_modality

__all__ = [
    "ALIGNERS", "Aligner", "CCAAlign", "CentroidShift", "CommonDim", "MeanCentering", "Procrustes", "UnifiedConfig",
    "align_embeddings", "alignment_table", "centroid_gap_vector", "compare_alignments", "fit_unified", "gap_report",
    "gap_table", "l2_normalize", "lambda_sweep", "linear_cka", "make_aligner", "modality_gap", "orthogonal_procrustes",
    "pair_similarity", "pairwise_gap_table", "pca_variance", "project", "save_alignment_results", "synthetic_modality",
]
