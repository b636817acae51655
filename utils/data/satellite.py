"""``satellite``: weekly Sentinel-2 images of Colombian municipalities with dengue cases (PhysioNet
``multimodal-satellite-data``): dengue above the municipality's median (binary) or terciles.

Raw layout read (the published folder names; table file and column names are configurable because
they were not verified against the release)::

    <root>/<subset>/images/<municipality code>/image_<YYYY-MM-DD>.tiff     multi-band Sentinel-2
    <root>/<subset>/metadata.csv            per municipality (code + descriptive columns): text
    <root>/<subset>/*dengue*.csv            cases per municipality and week: code + (date | year, week) + cases

``subset`` is ``10_municipalities`` (default when present) or an ``81_municipalities_v*`` folder.
Images are matched to the cases row of the same epidemiological week (weeks start on Sunday). Vision
backbones need RGB: each TIFF's ``rgb_bands`` (default B4, B3, B2 = indices 3, 2, 1) are stretched to
8 bit (2nd-98th percentile) and cached once as PNG under ``<root>/rgb_png/``.

Text comes from ``text_tables`` joined on the municipality (and week, when a table has one); the case
count and label are never in it. ``text="full"`` adds the week's case count (leaks; warned).
Splits: ``split="time"`` (the last weeks are val, then test: never random across the same week) or
``split="municipality"`` (grouped: each municipality in one split).
"""

from __future__ import annotations

import datetime as dt
import logging
import re
from pathlib import Path
from typing import Dict, Optional, Sequence, Tuple

import numpy as np
import pandas as pd

from . import register
from ._common import is_missing, read_table, variant, warn_leaky
from .schema import DatasetError, DatasetSpec, MultimodalDataset
from .splits import assign_splits

log = logging.getLogger(__name__)

_IMAGE = re.compile(r"image_(\d{4}-\d{2}-\d{2})\.tiff?$")
MUNI_NAMES = {"municipalitycode", "municipality", "codigo", "code", "mpiocode", "muncode", "municipalityid", "divipola", "codmpio", "municode"}
CASES_NAMES = {"cases", "dengue", "denguecases", "numcases", "dengue_cases", "casos"}
DATE_NAMES = {"date", "weekstart", "week_start", "fecha"}
YEAR_NAMES = {"year", "ano", "epiyear"}
WEEK_NAMES = {"week", "epiweek", "epidemiologicalweek", "semana", "epi_week"}
TASKS = {"dengue_binary": ["not_above_median", "above_median"], "dengue_tercile": ["low", "medium", "high"]}


def _norm(c: str) -> str:
    return re.sub(r"[\s_\-]", "", str(c).lower())


def _find(df: pd.DataFrame, given: Optional[str], names: set, path: Path, what: str, required: bool = True) -> Optional[str]:
    if given:
        if given not in df.columns:
            raise DatasetError(f"satellite: {path} has no column {given!r} ({what}); it has {list(df.columns)}")
        return given
    norm = {_norm(n) for n in names}
    for c in df.columns:
        if _norm(c) in norm:
            return c
    if required:
        raise DatasetError(
            f"satellite: cannot tell which column of {path} holds the {what}; it has {list(df.columns)}. "
            f"Pass it as an option (e.g. {what.split()[0]}_column='...')."
        )
    return None


def epi_week(d: dt.date) -> Tuple[int, int]:
    """Epidemiological (MMWR) year and week: weeks start on Sunday; week 1 has at least 4 days in January."""
    def start(year: int) -> dt.date:
        jan1 = dt.date(year, 1, 1)
        wd = (jan1.weekday() + 1) % 7  # Sunday = 0
        return jan1 - dt.timedelta(days=wd) if wd <= 3 else jan1 + dt.timedelta(days=7 - wd)

    y = d.year
    if d >= start(y + 1):
        y += 1
    elif d < start(y):
        y -= 1
    return y, (d - start(y)).days // 7 + 1


def tiff_to_rgb(src: Path, dst: Path, bands: Sequence[int] = (3, 2, 1)) -> None:
    """Write ``bands`` of a multi-band TIFF as an 8-bit RGB PNG (2nd-98th percentile stretch per band)."""
    import tifffile
    from PIL import Image

    arr = np.asarray(tifffile.imread(str(src)), dtype=np.float32)
    if arr.ndim == 2:
        arr = arr[..., None]
    if arr.ndim != 3:
        raise DatasetError(f"satellite: {src} has shape {arr.shape}; expected height x width x bands")
    if arr.shape[0] < arr.shape[-1] and arr.shape[0] <= 32:  # bands first
        arr = np.moveaxis(arr, 0, -1)
    n = arr.shape[-1]
    idx = list(bands) if max(bands) < n else list(range(min(3, n)))
    rgb = arr[..., idx]
    if rgb.shape[-1] < 3:
        rgb = np.repeat(rgb[..., :1], 3, axis=-1)
    out = np.zeros(rgb.shape, dtype=np.uint8)
    for k in range(3):
        band = rgb[..., k]
        finite = band[np.isfinite(band)]
        lo, hi = (np.percentile(finite, [2, 98]) if finite.size else (0.0, 1.0))
        scaled = (np.nan_to_num(band, nan=lo) - lo) / max(hi - lo, 1e-6)
        out[..., k] = np.clip(scaled * 255, 0, 255).astype(np.uint8)
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = dst.with_name(dst.name + ".tmp.png")
    Image.fromarray(out).save(tmp)
    tmp.replace(dst)


def _subset_dir(root: Path, subset: Optional[str]) -> Path:
    if subset:
        d = root / subset
        if not d.is_dir():
            raise DatasetError(f"satellite: folder {subset!r} not found under {root}")
        return d
    if (root / "10_municipalities").is_dir():
        return root / "10_municipalities"
    cands = sorted(p for p in root.glob("81_municipalities*") if p.is_dir())
    if cands:
        return cands[-1]
    if (root / "images").is_dir():
        return root
    raise DatasetError(
        f"satellite: no 10_municipalities/ or 81_municipalities_v*/ folder under {root}. Download the PhysioNet "
        "project multimodal-satellite-data and point root at it (or pass subset=...)."
    )


@register("satellite", task="binary", access="physionet")
def load_satellite(
    root: Path,
    task: str = "dengue_binary",
    split: str = "time",
    subset: Optional[str] = None,
    cases_file: Optional[str] = None,
    text_tables: Sequence[str] = ("metadata.csv",),
    municipality_column: Optional[str] = None,
    cases_column: Optional[str] = None,
    text: str = "default",
    rgb_bands: Sequence[int] = (3, 2, 1),
    fractions: Tuple[float, float, float] = (0.7, 0.15, 0.15),
    seed: int = 0,
    show_progress: bool = True,
) -> MultimodalDataset:
    """Load the Colombia satellite dataset (see the module docstring)."""
    from tqdm.auto import tqdm

    if task not in TASKS:
        raise ValueError(f"satellite: task must be one of {list(TASKS)}, got {task!r}")
    if split not in ("time", "municipality"):
        raise ValueError(f"satellite: split must be 'time' or 'municipality', got {split!r}")
    if text not in ("default", "full"):
        raise ValueError(f"satellite: text must be 'default' or 'full' (leaks the label), got {text!r}")
    folder = _subset_dir(root, subset)

    # cases per municipality and epidemiological week
    if cases_file:
        cpath = folder / cases_file if (folder / cases_file).is_file() else root / cases_file
    else:
        found = sorted(p for p in list(folder.glob("*.csv")) + list(root.glob("*.csv")) if "dengue" in p.name.lower())
        if not found:
            raise DatasetError(f"satellite: no CSV with 'dengue' in its name in {folder} or {root}; pass cases_file=...")
        cpath = found[0]
    if not cpath.is_file():
        raise DatasetError(f"satellite: cases file {cpath} not found; pass cases_file=...")
    cases = read_table(cpath, "satellite")
    mcol = _find(cases, municipality_column, MUNI_NAMES, cpath, "municipality code")
    ccol = _find(cases, cases_column, CASES_NAMES, cpath, "cases count")
    dcol = _find(cases, None, DATE_NAMES, cpath, "date", required=False)
    if dcol is not None:
        yw = [epi_week(pd.Timestamp(d).date()) for d in cases[dcol]]
    else:
        ycol = _find(cases, None, YEAR_NAMES, cpath, "year (or a date column)")
        wcol = _find(cases, None, WEEK_NAMES, cpath, "week (or a date column)")
        yw = list(zip(cases[ycol].astype(int), cases[wcol].astype(int)))
    cases = pd.DataFrame({"code": cases[mcol].astype(str).str.strip(), "yw": yw, "cases": pd.to_numeric(cases[ccol], errors="coerce")})
    bad = cases.index[cases["cases"].isna()].tolist()
    if bad:
        raise DatasetError(f"satellite: column {ccol!r} of {cpath} is not a number on line(s) {[b + 2 for b in bad[:10]]}")
    cases = cases.groupby(["code", "yw"], as_index=False)["cases"].sum()
    labels: Dict[Tuple[str, Tuple[int, int]], str] = {}
    for code, part in cases.groupby("code"):
        v = part["cases"].to_numpy()
        if task == "dengue_binary":
            med = np.median(v)
            lab = np.where(v > med, "above_median", "not_above_median")
        else:
            q1, q2 = np.quantile(v, [1 / 3, 2 / 3])
            lab = np.where(v <= q1, "low", np.where(v <= q2, "medium", "high"))
        labels.update({(code, yw): str(lab_i) for yw, lab_i in zip(part["yw"], lab)})
    case_count = {(c, yw): n for c, yw, n in zip(cases["code"], cases["yw"], cases["cases"])}

    # images
    images = sorted((folder / "images").glob("*/image_*.tif*"))
    if not images:
        raise DatasetError(f"satellite: no images/<code>/image_<YYYY-MM-DD>.tiff under {folder}")
    rows, unmatched = [], 0
    for p in images:
        m = _IMAGE.search(p.name)
        if not m:
            continue
        code, date = p.parent.name, m.group(1)
        yw = epi_week(dt.date.fromisoformat(date))
        if (code, yw) not in labels:
            unmatched += 1
            continue
        rows.append({"id": f"{code}_{date}", "code": code, "date": date, "yw": yw, "tiff": p,
                     "label": labels[(code, yw)], "cases": case_count[(code, yw)]})
    if unmatched:
        log.warning("satellite: %d image(s) have no cases row for their municipality and week: left out", unmatched)
    if not rows:
        raise DatasetError(f"satellite: no image matches a row of {cpath} (municipality codes and weeks differ?)")
    df = pd.DataFrame(rows)

    cache = root / "rgb_png" / folder.name
    todo = [(r.tiff, cache / r.code / f"image_{r.date}.png") for r in df.itertuples()]
    for src, dst in tqdm([t for t in todo if not t[1].is_file()], desc="satellite: TIFF -> RGB PNG", disable=not show_progress):
        tiff_to_rgb(src, dst, rgb_bands)
    df["image_path"] = [str(d.relative_to(root)) for _, d in todo]

    # text from the municipality (and week) tables
    texts = [f"Municipality {c}, epidemiological week {yw[1]} of {yw[0]}." for c, yw in zip(df["code"], df["yw"])]
    for name in text_tables:
        tpath = folder / name if (folder / name).is_file() else root / name
        if not tpath.is_file():
            raise DatasetError(f"satellite: text table {name!r} not found in {folder} or {root}; pass text_tables=[...]")
        t = read_table(tpath, "satellite")
        tm = _find(t, municipality_column if municipality_column in t.columns else None, MUNI_NAMES, tpath, "municipality code")
        t[tm] = t[tm].astype(str).str.strip()
        td = _find(t, None, DATE_NAMES, tpath, "date", required=False)
        skip = {tm, td} | {c for c in t.columns if _norm(c) in {_norm(n) for n in CASES_NAMES | YEAR_NAMES | WEEK_NAMES}}
        keycols = [c for c in t.columns if c not in skip]
        if td is not None:
            t["_yw"] = [epi_week(pd.Timestamp(d).date()) for d in t[td]]
            lookup = {(r[tm], r["_yw"]): r for r in t.to_dict("records")}
            keys = list(zip(df["code"], df["yw"]))
        else:
            lookup = {r[tm]: r for r in t.to_dict("records")}
            keys = list(df["code"])
        for i, k in enumerate(keys):
            r = lookup.get(k)
            if r is None:
                continue
            parts = [f"{c.replace('_', ' ')}: {r[c]}" for c in keycols if not is_missing(r[c])]
            if parts:
                texts[i] += " " + "; ".join(parts) + "."
    if text == "full":
        warn_leaky("satellite", "the week's dengue case count")
        texts = [t + f" Dengue cases this week: {int(n)}." for t, n in zip(texts, df["cases"])]
    df["text"] = texts

    if split == "time":
        dates = sorted(df["date"].unique())
        n_test = max(1, int(round(fractions[2] * len(dates))))
        n_val = max(1, int(round(fractions[1] * len(dates))))
        test_d, val_d = set(dates[len(dates) - n_test:]), set(dates[len(dates) - n_test - n_val: len(dates) - n_test])
        df["split"] = ["test" if d in test_d else "val" if d in val_d else "train" for d in df["date"]]
    else:
        df["group"] = df["code"]
        df["split"] = assign_splits(df["label"].tolist(), tuple(fractions), seed, groups=df["code"].tolist())
    cols = ["id", "text", "image_path", "label", "split", "code", "date", "cases"] + (["group"] if split == "municipality" else [])
    spec = DatasetSpec(
        name="satellite", task="binary" if task == "dengue_binary" else "multiclass", classes=TASKS[task], root=str(root),
        text_template="Municipality {code}, epidemiological week {week} of {year}. <column: value; ... from "
        + ", ".join(text_tables) + ">" + (" Dengue cases this week: {cases}." if text == "full" else ""),
        variant=variant(folder.name if folder != root else "", task, "fulltext" if text == "full" else ""),
        description="Sentinel-2 RGB + municipality tables -> dengue level of the week",
    )
    return MultimodalDataset(df[cols], spec)
