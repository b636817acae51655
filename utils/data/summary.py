"""``summary(dataset)``: records per split and class, text lengths, missing media, duplicates, and the lines
the loader recovered or skipped (its load report)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, Optional

import numpy as np
import pandas as pd

from .quirks import LoadReport, report_of
from ..imaging import load_rgb
from .schema import SPLITS, MultimodalDataset, as_list


@dataclass
class DatasetSummary:
    """What :func:`summary` found. ``splits``: rows per split; ``classes``: class x split counts (for
    multilabel, rows carrying the class); ``text_length``: words per text by split (count, missing,
    min, median, mean, p95, max); ``missing_media``: modality -> rows whose file is absent;
    ``duplicates``: duplicated texts, media files and (text, media) pairs; ``load_report``: the lines the
    loader recovered or skipped (:class:`~utils.data.quirks.LoadReport`; None for a table built by hand)."""

    name: str
    rows: int
    splits: pd.Series
    classes: pd.DataFrame
    text_length: pd.DataFrame
    missing_media: Dict[str, int]
    duplicates: Dict[str, int]
    extra: Dict[str, Any] = field(default_factory=dict)
    load_report: Optional[LoadReport] = None

    def __str__(self) -> str:
        return (
            f"{self.name}: {self.rows} rows; " + ", ".join(f"{k}={v}" for k, v in self.splits.items())
            + (f"\nload report: {self.load_report}" if self.load_report is not None else "")
            + f"\nmissing media: {self.missing_media}\nduplicates: {self.duplicates}"
            + f"\nclasses (rows per split):\n{self.classes.to_string()}\ntext length (words):\n{self.text_length.to_string()}"
        )

    def _repr_html_(self) -> str:
        return (
            f"<b>{self.name}</b>: {self.rows} rows; missing media {self.missing_media}; duplicates {self.duplicates}"
            + ("<br>load report: " + self.load_report._repr_html_() if self.load_report is not None else "")
            + "<br>" + self.splits.to_frame("rows").T.to_html() + self.classes.to_html() + self.text_length.to_html()
        )


def summary(ds: MultimodalDataset, check_files: bool = True, max_classes: int = 50) -> DatasetSummary:
    """Summarise ``ds`` (``check_files``: stat every image/audio file to count missing ones)."""
    df = ds.df
    splits = df["split"].value_counts().reindex(list(SPLITS), fill_value=0)
    if ds.spec.task == "multilabel":
        long = pd.DataFrame([(c, s) for lab, s in zip(df["label"], df["split"]) for c in as_list(lab)], columns=["label", "split"])
    else:
        long = df[["label", "split"]].astype(str)
    classes = pd.crosstab(long["label"], long["split"]).reindex(columns=list(SPLITS), fill_value=0)
    classes = classes.reindex([c for c in ds.spec.classes if c in classes.index]).fillna(0).astype(int)
    classes["total"] = classes.sum(axis=1)
    classes = classes.sort_values("total", ascending=False).head(max_classes)

    texts = ds.items("text") if "text" in df.columns else [""] * len(df)
    words = pd.Series([len(t.split()) for t in texts])
    miss = pd.Series([t == "" for t in texts])
    stats = []
    for s in list(SPLITS) + ["all"]:
        m = (df["split"] == s).to_numpy() if s != "all" else np.ones(len(df), bool)
        w = words[m & ~miss.to_numpy()]
        stats.append({
            "split": s, "texts": int(m.sum()), "missing": int((m & miss.to_numpy()).sum()),
            "min": int(w.min()) if len(w) else 0, "median": float(w.median()) if len(w) else 0.0,
            "mean": round(float(w.mean()), 1) if len(w) else 0.0, "p95": float(w.quantile(0.95)) if len(w) else 0.0,
            "max": int(w.max()) if len(w) else 0,
        })
    text_length = pd.DataFrame(stats).set_index("split")

    missing_media: Dict[str, int] = {}
    duplicates: Dict[str, int] = {"text": int(pd.Series(texts)[~miss].duplicated().sum())}
    for m in ds.spec.modalities:
        if m == "text":
            continue
        paths = ds.items(m)
        if check_files:
            missing_media[m] = sum(1 for p in paths if p is None or not Path(p).is_file())
        duplicates[m] = int(pd.Series(paths).dropna().duplicated().sum())
        duplicates[f"text+{m}"] = int(pd.DataFrame({"t": texts, "p": paths}).duplicated().sum())
    return DatasetSummary(ds.spec.key, len(df), splits, classes, text_length, missing_media, duplicates,
                          load_report=report_of(ds))


def example_figure(ds: MultimodalDataset, n: int = 3, seed: int = 0, width: int = 60):
    """A figure of ``n`` random records: the image (when there is one) titled with label and wrapped text."""
    import textwrap

    import matplotlib

    if matplotlib.get_backend().lower() not in ("agg",) and "inline" not in matplotlib.get_backend().lower():
        matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rng = np.random.default_rng(seed)
    rows = rng.choice(len(ds), size=min(n, len(ds)), replace=False)
    fig, axes = plt.subplots(1, len(rows), figsize=(4 * len(rows), 4.5), squeeze=False)
    images = ds.items("image") if "image" in ds.spec.modalities else [None] * len(ds)
    texts = ds.items("text") if "text" in ds.df.columns else [""] * len(ds)
    for ax, r in zip(axes[0], rows):
        ax.axis("off")
        if images[r] is not None and Path(images[r]).is_file():
            ax.imshow(load_rgb(images[r]))
        label = ds.df["label"].iloc[r]
        label = ", ".join(as_list(label)) if ds.spec.task == "multilabel" else str(label)
        body = textwrap.fill(texts[r][:300], width) if texts[r] else "(no text)"
        if "audio_path" in ds.df.columns:
            body += "\n" + Path(str(ds.df["audio_path"].iloc[r])).name
        ax.set_title(f"[{label}] {ds.df['split'].iloc[r]}\n{body}", fontsize=8, loc="left")
    fig.tight_layout()
    plt.close(fig)
    return fig


def save_summaries(summaries: Dict[str, Any], path: Any) -> Path:
    """Write ``{name: DatasetSummary or None}`` as a JSON list of rows (name, loaded, rows, per-split counts, ...)."""
    import json

    rows = []
    for name, s in summaries.items():
        row: Dict[str, Any] = {"dataset": name, "loaded": s is not None}
        if s is not None:
            row.update(key=s.name, rows=s.rows, splits={k: int(v) for k, v in s.splits.items()},
                       classes=int(len(s.classes)), missing_media=s.missing_media, duplicates=s.duplicates,
                       load_report=s.load_report.to_dict() if s.load_report is not None else None)
        rows.append(row)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(rows, indent=1))
    return path
