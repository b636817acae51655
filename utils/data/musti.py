"""``musti``: MUSTI (MediaEval 2023): does a text passage and an artwork image evoke the same smell source?

Binary, imbalanced (positives are the minority). The release's exact file layout was not verified, so
the loader reads a CSV / TSV / JSON(L) of pairs with configurable columns: ``file`` (default: the
first of ``pairs.csv``, ``musti.csv``, ``train.csv``... found), ``text_column="text"``,
``image_column="image"`` (relative to ``image_base``, default ``root``), ``label_column="label"``
(1 / 0, true / false, yes / no), ``split_column`` (optional: otherwise a stratified seeded split),
``id_column``, ``language_column`` (kept as ``language``). Classes ``["no", "yes"]`` ("yes" = same smell
source: the positive class).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

from . import register
from ._common import read_table
from .schema import DatasetError, MultimodalDataset
from .table import frame_to_dataset

CANDIDATES = ("pairs.csv", "musti.csv", "pairs.tsv", "pairs.json", "pairs.jsonl", "musti.json")
YES_NO = {"1": "yes", "0": "no", "true": "yes", "false": "no", "yes": "yes", "no": "no", "True": "yes", "False": "no"}


@register("musti", task="binary", access="registration")
def load_musti(root: Path, file: Optional[str] = None, language_column: Optional[str] = None, **options: Any) -> MultimodalDataset:
    """Load MUSTI pairs (see the module docstring)."""
    if file is None:
        found = [n for n in CANDIDATES if (Path(root) / n).is_file()]
        if not found:
            raise DatasetError(
                f"musti: no pairs file ({', '.join(CANDIDATES)}) under {root}; pass file='...' and the column "
                "names (text_column=, image_column=, label_column=). Data: https://multimediaeval.github.io/editions/2023/tasks/musti/"
            )
        file = found[0]
    path = Path(root) / file
    if not path.is_file():
        raise DatasetError(f"musti: {path} not found; pass file= relative to the dataset folder")
    raw = read_table(path, "musti")
    defaults = dict(text_column="text", image_column="image", label_column="label", classes=["no", "yes"],
                    label_map=YES_NO, task="binary")
    defaults.update(options)
    ds = frame_to_dataset(raw, path, Path(root), "musti", description="MUSTI text-image smell-source pairs", **defaults)
    if language_column:
        ds.df["language"] = raw[language_column].tolist()
    return ds
