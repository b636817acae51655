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

Splits and labels:

- ``split="time"`` (default): the last weeks (by image date) are test, the weeks before them val, the rest
  train, never random across one week. **Every municipality is in every split**: the model sees each
  place's earlier weeks in training and is tested on its later weeks (forecasting for known places).
  Each municipality's label threshold (its median, or its tercile cut points) is fitted on its
  **training weeks only** and applied to its val and test weeks, so no training label depends on a
  val or test count; a municipality with no training week is skipped (counted).
- ``split="municipality"``: grouped; each municipality sits in exactly one split (generalising to unseen
  places). Its threshold is fitted on its own weeks, which all sit in that one split, so again no
  training label depends on val or test rows.

The thresholds used are in ``spec.extra["thresholds"]`` (code -> cut points).

Quirks (counted in ``ds.spec.extra["load_report"]``): stray whitespace, blank lines, codes written
``5001.0`` (leading zeros never matter: ``05001`` is ``5001``), counts written ``1,234`` and exact
duplicate lines are recovered; a cases line whose code, week or count does not parse is skipped, with
that municipality's week (a partial weekly sum would give a wrong label); images whose name holds no valid
date, that have no cases row, or that cannot be read are skipped (``strict=True`` raises instead).
"""

from __future__ import annotations

import datetime as dt
import logging
import re
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np
import pandas as pd

from . import register
from ._common import drop_duplicates, is_missing, read_table, to_number, variant, warn_leaky
from .quirks import LoadReport, attach
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


def code_key(value: Any) -> str:
    """The municipality code as matched across files: ``" 05001"``, ``"5001.0"`` and ``"5001"`` are one code."""
    t = str(value).strip()
    t = t[:-2] if t.endswith(".0") else t
    return str(int(t)) if t.isdigit() else t


def _cases_table(cpath: Path, municipality_column: Optional[str], cases_column: Optional[str],
                 report: LoadReport) -> Tuple[pd.DataFrame, set]:
    """Cases per (municipality key, epi week) summed over the file's rows, and the keys left out because
    one of their lines did not parse (a partial weekly sum would give a wrong label)."""
    raw = read_table(cpath, "satellite", report=report, dtype=str)
    mcol = _find(raw, municipality_column, MUNI_NAMES, cpath, "municipality code")
    ccol = _find(raw, cases_column, CASES_NAMES, cpath, "cases count")
    dcol = _find(raw, None, DATE_NAMES, cpath, "date", required=False)
    ycol = wcol = None
    if dcol is None:
        ycol = _find(raw, None, YEAR_NAMES, cpath, "year (or a date column)")
        wcol = _find(raw, None, WEEK_NAMES, cpath, "week (or a date column)")
    raw = drop_duplicates(raw.assign(_all=pd.util.hash_pandas_object(raw, index=False)), "_all", report, cpath, "values")
    rows, bad_keys = [], set()
    for line, r in zip(raw.index, raw.to_dict("records")):
        code = r[mcol]
        if is_missing(code):
            report.skipped(cpath, line, "municipality code missing")
            continue
        key = code_key(code)  # leading zeros are not a quirk: codes are written both ways
        if str(code) != str(code).strip():
            report.recovered(cpath, line, "stray whitespace", code)
        if str(code).strip().endswith(".0"):
            report.recovered(cpath, line, "municipality code written as a decimal number", code)
        yw = _week_of(r, dcol, ycol, wcol)
        if yw is None:
            report.skipped(cpath, line, "date does not parse" if dcol else "year / week not whole numbers",
                           r[dcol] if dcol else f"{r[ycol]} / {r[wcol]}")
            continue
        n, how = _count(r[ccol])
        if n is None:
            report.skipped(cpath, line, f"{ccol!r} {how}", r[ccol])
            bad_keys.add((key, yw))
            continue
        if how:
            report.recovered(cpath, line, f"bad number in {ccol!r}", r[ccol])
        rows.append((key, yw, n))
    cases = pd.DataFrame(rows, columns=["code", "yw", "cases"])
    cases = cases[[(c, w) not in bad_keys for c, w in zip(cases["code"], cases["yw"])]]
    return cases.groupby(["code", "yw"], as_index=False)["cases"].sum(), bad_keys


def _week_of(r: Dict[str, Any], dcol: Optional[str], ycol: Optional[str], wcol: Optional[str]) -> Optional[Tuple[int, int]]:
    try:
        if dcol is not None:
            return epi_week(pd.Timestamp(str(r[dcol]).strip()).date())
        y, w = to_number(r[ycol])[0], to_number(r[wcol])[0]
        if y is None or w is None or y != int(y) or w != int(w) or not 1 <= w <= 53:
            return None
        return int(y), int(w)
    except (ValueError, TypeError):
        return None


def _count(v: Any) -> Tuple[Optional[float], str]:
    """A case count: ``"1,234"`` (thousands) and ``"12.0"`` read; negative, missing or other text do not."""
    if isinstance(v, str) and re.fullmatch(r"\s*\d{1,3}(,\d{3})+\s*", v):
        return float(v.replace(",", "")), "bad number"
    x, how = to_number(v)
    if x is None:
        return None, how
    if x < 0 or x != int(x):
        return None, "not a whole number of cases"
    return x, how


def fit_thresholds(cases: pd.DataFrame, task: str) -> Dict[str, Tuple[float, ...]]:
    """Per municipality code: the median (binary) or the tercile cut points of ``cases`` (its rows)."""
    out: Dict[str, Tuple[float, ...]] = {}
    for code, part in cases.groupby("code"):
        v = part["cases"].to_numpy(dtype=float)
        out[code] = (float(np.median(v)),) if task == "dengue_binary" else tuple(float(q) for q in np.quantile(v, [1 / 3, 2 / 3]))
    return out


def apply_thresholds(codes: Sequence[str], counts: Sequence[float], cuts: Dict[str, Tuple[float, ...]], task: str) -> List[Optional[str]]:
    """The class of each (code, count) under ``cuts``; None for a code without cut points."""
    out: List[Optional[str]] = []
    for c, n in zip(codes, counts):
        t = cuts.get(c)
        if t is None:
            out.append(None)
        elif task == "dengue_binary":
            out.append("above_median" if n > t[0] else "not_above_median")
        else:
            out.append("low" if n <= t[0] else "medium" if n <= t[1] else "high")
    return out


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
    strict: bool = False,
) -> MultimodalDataset:
    """Load the Colombia satellite dataset (see the module docstring for the splits and the labels).

    ``strict``: raise on a line or file that would be skipped instead of skipping it.
    """
    from ..runtime import progress_bar as tqdm

    if task not in TASKS:
        raise ValueError(f"satellite: task must be one of {list(TASKS)}, got {task!r}")
    if split not in ("time", "municipality"):
        raise ValueError(f"satellite: split must be 'time' or 'municipality', got {split!r}")
    if text not in ("default", "full"):
        raise ValueError(f"satellite: text must be 'default' or 'full' (leaks the label), got {text!r}")
    folder = _subset_dir(root, subset)
    report = LoadReport("satellite", root=str(root), strict=strict)

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
    cases, bad_keys = _cases_table(cpath, municipality_column, cases_column, report)
    case_count = {(c, yw): n for c, yw, n in zip(cases["code"], cases["yw"], cases["cases"])}

    # images matched to the cases of their municipality and week
    images = sorted((folder / "images").glob("*/image_*.tif*"))
    if not images:
        raise DatasetError(f"satellite: no images/<code>/image_<YYYY-MM-DD>.tiff under {folder}")
    rows = []
    for p in images:
        m = _IMAGE.search(p.name)
        try:
            day = dt.date.fromisoformat(m.group(1)) if m else None
        except ValueError:
            day = None
        if day is None:
            report.skipped(p, 0, "image name holds no valid date (image_<YYYY-MM-DD>.tiff)")
            continue
        code, date = p.parent.name, m.group(1)
        key, yw = code_key(code), epi_week(day)
        if (key, yw) not in case_count:
            if (key, yw) not in bad_keys:  # a week whose cases line was skipped is counted there
                report.skipped(p, 0, f"no row in {cpath.name} for this municipality and week")
            continue
        rows.append({"id": f"{code}_{date}", "code": code, "key": key, "date": date, "yw": yw, "tiff": p,
                     "cases": case_count[(key, yw)]})
    if not rows:
        raise DatasetError(f"satellite: no image matches a row of {cpath} (municipality codes and weeks differ?)\n{report}")
    df = pd.DataFrame(rows)

    cache = root / "rgb_png" / folder.name
    todo = [(r.tiff, cache / r.code / f"image_{r.date}.png") for r in df.itertuples()]
    unreadable = set()
    for src, dst in tqdm([t for t in todo if not t[1].is_file()], desc="satellite: TIFF -> RGB PNG", disable=not show_progress):
        try:
            tiff_to_rgb(src, dst, rgb_bands)
        except Exception as e:  # noqa: BLE001 - any decoder error means this one file is unreadable
            report.skipped(src, 0, "unreadable TIFF", f"{type(e).__name__}: {e}")
            unreadable.add(src)
    df["image_path"] = [str(d.relative_to(root)) for _, d in todo]
    df = df[~df["tiff"].isin(unreadable)].reset_index(drop=True)

    # splits, then labels with thresholds fitted on training rows only
    if split == "time":
        dates = sorted(df["date"].unique())
        n_test = max(1, int(round(fractions[2] * len(dates))))
        n_val = max(1, int(round(fractions[1] * len(dates))))
        test_d, val_d = set(dates[len(dates) - n_test:]), set(dates[len(dates) - n_test - n_val: len(dates) - n_test])
        df["split"] = ["test" if d in test_d else "val" if d in val_d else "train" for d in df["date"]]
        cuts = fit_thresholds(df.loc[df["split"] == "train", ["key", "cases"]].rename(columns={"key": "code"}), task)
        df["label"] = apply_thresholds(df["key"], df["cases"], cuts, task)
        for p, code in df.loc[df["label"].isna(), ["tiff", "code"]].itertuples(index=False):
            report.skipped(p, 0, "municipality has no training week to fit its label threshold", code)
        df = df[df["label"].notna()].reset_index(drop=True)
    else:
        # each municipality sits in one split, so its own weeks are all in that split
        cuts = fit_thresholds(df[["key", "cases"]].rename(columns={"key": "code"}), task)
        df["label"] = apply_thresholds(df["key"], df["cases"], cuts, task)
        df["group"] = df["code"]
        df["split"] = assign_splits(df["label"].tolist(), tuple(fractions), seed, groups=df["code"].tolist())

    # text from the municipality (and week) tables
    texts = [f"Municipality {c}, epidemiological week {yw[1]} of {yw[0]}." for c, yw in zip(df["code"], df["yw"])]
    for name in text_tables:
        tpath = folder / name if (folder / name).is_file() else root / name
        if not tpath.is_file():
            raise DatasetError(f"satellite: text table {name!r} not found in {folder} or {root}; pass text_tables=[...]")
        t = read_table(tpath, "satellite", report=report)
        tm = _find(t, municipality_column if municipality_column in t.columns else None, MUNI_NAMES, tpath, "municipality code")
        t["_key"] = [code_key(v) for v in t[tm]]
        td = _find(t, None, DATE_NAMES, tpath, "date", required=False)
        skip = {tm, td, "_key"} | {c for c in t.columns if _norm(c) in {_norm(n) for n in CASES_NAMES | YEAR_NAMES | WEEK_NAMES}}
        keycols = [c for c in t.columns if c not in skip]
        if td is not None:
            t["_yw"] = [epi_week(pd.Timestamp(d).date()) for d in t[td]]
            lookup = {(r["_key"], r["_yw"]): r for r in t.to_dict("records")}
            keys = list(zip(df["key"], df["yw"]))
        else:
            lookup = {r["_key"]: r for r in t.to_dict("records")}
            keys = list(df["key"])
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
    report.finish(len(df))

    cols = ["id", "text", "image_path", "label", "split", "code", "date", "cases"] + (["group"] if split == "municipality" else [])
    spec = DatasetSpec(
        name="satellite", task="binary" if task == "dengue_binary" else "multiclass", classes=TASKS[task], root=str(root),
        text_template="Municipality {code}, epidemiological week {week} of {year}. <column: value; ... from "
        + ", ".join(text_tables) + ">" + (" Dengue cases this week: {cases}." if text == "full" else ""),
        variant=variant(folder.name if folder != root else "", task, "fulltext" if text == "full" else ""),
        description="Sentinel-2 RGB + municipality tables -> dengue level of the week",
        extra=attach({"thresholds": {c: list(v) for c, v in cuts.items()}}, report),
    )
    return MultimodalDataset(df[cols], spec)
