"""``imported``: vectors made elsewhere, brought into the store instead of computed.

``create_for("imported:<name>", modality)`` stands for vectors that :func:`utils.imported.import_embeddings`
put into the store under ``<name>`` (an ``Embeddings_dinov2_base.csv`` of the original framework, a
clip-retrieval output folder, a ``.npy`` with its ids, ...). Nothing is ever computed: the store reuses the
imported vectors, and a record without one is refused with what to run (``encode`` raises).
"""

from __future__ import annotations

import re
from typing import Any, List, Optional

import numpy as np

from . import FAMILIES
from .base import Extractor, ExtractorError

NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")


@FAMILIES.register("imported")
class ImportedVectors(Extractor):
    family = "imported"
    imported = True  # the store's identity is the record ids, not the media: nothing was computed from them

    def __init__(self, model_id: str, modality: str = "image", **options: Any):
        if not NAME.match(model_id):
            raise ValueError(f"imported:{model_id!r}: name imported vectors with letters, digits, '.', '_' or '-' "
                             "(e.g. imported:dinov2_base)")
        if modality not in ("text", "image", "audio"):
            raise ValueError(f"imported:{model_id}: modality must be text, image or audio, got {modality!r}")
        super().__init__(model_id, **options)
        self.modality = modality

    def config(self):
        return {"id": self.id, "modality": self.modality, "options": {}}

    def describe(self) -> str:
        return f"{self.id} (vectors imported, not computed here)"

    def _encode(self, items: List[Any], batch_size: int, device: Optional[str], show_progress: bool,
                on_error: str) -> np.ndarray:
        raise ExtractorError(
            f"{self.id}: {len(items)} {self.modality} record(s) have no imported vector, and imported vectors cannot be "
            f"computed here. Import vectors for every record first: utils.imported.import_embeddings(ds, "
            f"{self.modality!r}, source, name={self.model_id!r})")
