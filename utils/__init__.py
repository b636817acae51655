"""Multimodal data fusion with frozen foundation-model embeddings.

``import utils`` is kept light: heavy libraries (torch, transformers, timm, faiss, umap) are imported
inside the functions that need them. Submodules:

- :mod:`utils.config`      paths (data, embeddings, results), devices, Colab
- :mod:`utils.data`        dataset loaders returning the table contract (``utils.data.load``)
- :mod:`utils.extractors`  frozen foundation-model encoders (``utils.extractors.create``)
- :mod:`utils.store`       the on-disk embedding store (sharded, resumable, memory-mapped)
- :mod:`utils.embed`       ``embed(dataset, modality, extractor)``: extraction into the store
- :mod:`utils.models`      fusion heads and losses
- :mod:`utils.train`       the trainer (in-memory batches, early stopping on validation)
- :mod:`utils.metrics`     classification metrics
- :mod:`utils.experiment`  one function per notebook step
- :mod:`utils.viz`         figures (returned, never shown)
"""

__version__ = "0.1.0"

import logging as _logging

_logging.getLogger(__name__).addHandler(_logging.NullHandler())
