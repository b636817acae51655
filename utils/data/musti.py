"""``musti``: MUSTI (MediaEval 2023): does a text passage and an artwork image evoke the same smell source?

Binary, imbalanced (positives are the minority). The release's exact file layout was not verified, so
the loader reads a CSV / TSV / JSON(L) of pairs with configurable columns: ``file`` (default: the
first of ``pairs.csv``, ``musti.csv``, ``train.csv``... found), ``text_column="text"``,
``image_column="image"`` (relative to ``image_base``, default ``root``), ``label_column="label"``
(1 / 0, true / false, yes / no), ``split_column`` (optional: otherwise a stratified seeded split),
``id_column``, ``language_column`` (kept as ``language``, a subgroup column). Classes ``["no", "yes"]``
("yes" = same smell source: the positive class). Quirks are handled as in the ``table`` loader (labels
such as ``Yes`` / ``TRUE`` recovered, unknown labels and splits skipped; ``strict=True`` raises instead).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, Optional

from . import register
from ._common import read_table, require_columns
from .quirks import LoadReport
from .schema import DatasetError, MultimodalDataset
from .table import frame_to_dataset

CANDIDATES = ("pairs.csv", "musti.csv", "pairs.tsv", "pairs.json", "pairs.jsonl", "musti.json")
YES_NO = {"1": "yes", "0": "no", "true": "yes", "false": "no", "yes": "yes", "no": "no", "True": "yes", "False": "no"}


@register("musti", task="binary", access="registration")
def load_musti(root: Path, file: Optional[str] = None, language_column: Optional[str] = None, strict: bool = False,
               **options: Any) -> MultimodalDataset:
    """Load MUSTI pairs (see the module docstring; ``options`` are :class:`~utils.data.table.TableOptions` fields)."""
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
    report = LoadReport("musti", root=str(root), strict=strict)
    raw = read_table(path, "musti", report=report)
    defaults: Dict[str, Any] = dict(text_column="text", image_column="image", label_column="label", classes=["no", "yes"],
                                    label_map=YES_NO, task="binary")
    defaults.update(options)
    if language_column:
        require_columns(raw, [language_column], path, "musti")
        raw = raw.assign(language=raw[language_column])
        defaults["subgroup_columns"] = [*defaults.get("subgroup_columns", ()), "language"]
    return frame_to_dataset(raw, path, Path(root), "musti", report=report,
                            description="MUSTI text-image smell-source pairs", **defaults)
