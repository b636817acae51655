"""The report of a trained comparison: one call gives intervals, calibration, subgroups, missing modalities
and what each modality adds, and saves them beside the results.

    rows = ex.train_heads(ds, emb, ["early_fusion", "late_fusion", "text_only", "image_only"], seeds=[0, 1, 2])
    rep = ex.report(rows, out_dir="results", name="embed_model_synthetic")
    print(rep.to_text())

What it holds (every table a DataFrame; the figures are matplotlib figures, saved as PNG with ``out_dir``):

- ``intervals``: per model, each test metric's mean and sd over seeds and the 95% stratified bootstrap
  interval of that mean (the resamples are shared by all models, so they are paired);
- ``paired``: every pair of models, the difference in macro-F1 and ROC-AUC with its interval and a bootstrap p;
- ``calibration`` and ``reliability``: ECE and Brier score per model, before and after temperature scaling
  fitted on the validation logits only, and the reliability diagram's bins;
- ``subgroups`` and ``subgroup_gaps``: metrics per value of each grouping column the dataset lists in
  ``spec.extra["subgroups"]`` (or the columns you name), small groups listed not scored, and the worst-group
  gap with its interval;
- ``missing``: every fusion head scored with each modality replaced by its training mean or by zeros, the
  drop and its paired interval;
- ``shapley`` and ``shapley_subsets``: each fusion head trained on every subset of its modalities (exact up to
  4 modalities; early fusion on one modality is the ``<m>_only`` head, reused), Shapley values of test
  macro-F1 with intervals; the empty set is the prior predictor (classes drawn with the training shares; the
  majority class with ``shapley_empty="majority"``), and the values sum to the full head's gain over it.

All of the test-set statistics come out of one vectorised bootstrap over every model, seed, stand-in and
subset at once (see :mod:`utils.evaluation`).
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np
import pandas as pd

from ..config import PathLike, merge_config
from ..evaluation import (
    METRICS, ScoreTable, all_subsets, apply_temperature, bootstrap_device, brier, ece, fit_temperature, group_labels,
    label_strata, mean_over, paired_difference, percentile_interval, prior_predictions, prior_proba, reliability_bins,
    shapley_values, subgroup_metrics,
)
from ..io import atomic_write_bytes, write_json
from .heads import STAND_INS, TrainedHeads, fit_head

log = logging.getLogger(__name__)

SUBGROUP_METRICS = ("accuracy", "macro_f1", "roc_auc")  # scored per group (and their worst-group gaps)


@dataclass
class ReportConfig:
    n_resamples: int = 1000  # bootstrap resamples (percentile intervals); >= 1000 for reported intervals
    level: float = 0.95  # two-sided interval level
    seed: int = 0  # bootstrap seed (rows scored on the same test rows share their resamples)
    n_bins: int = 15  # equal-width confidence bins for ECE and the reliability diagram
    temperature_scaling: bool = True  # fit one temperature per head on its validation logits; report before / after
    subgroups: Optional[Sequence[str]] = None  # grouping columns of ds.df; None: ds.spec.extra["subgroups"] if listed
    min_group_size: int = 20  # groups with fewer test rows are listed with the reason, not scored
    shapley: bool = True  # Shapley values over modalities (trains each fusion head on every subset)
    shapley_heads: Optional[Sequence[str]] = None  # None: every fusion head of the comparison
    shapley_metric: str = "macro_f1"  # the value of a subset: this test metric (mean over seeds)
    shapley_empty: str = "prior"  # the empty set: "prior" (classes drawn with the training shares) or "majority"
    max_shapley_modalities: int = 4  # exact Shapley values need 2^M subsets: refused above this
    figures: bool = True  # draw the figures (saved when out_dir is given)
    reliability_bins: str = "adaptive"  # the diagram's bins: "adaptive" (equal-mass, ~25 predictions each), "quantile", "uniform"
    figure_formats: Sequence[str] = ("png", "pdf")  # each figure saved in these formats (pdf / svg: vector, for a paper)
    figure_dpi: int = 200  # resolution of the PNG
    # where the bootstrap's counts and ROC-AUC sums run: "auto" (a GPU when there is one and the resamples are large
    # enough to pay for the copies, else numpy), "cpu", "cuda", "cuda:N". The samples are the same either way.
    device: str = "auto"

    def __post_init__(self) -> None:
        if self.n_resamples < 1:
            raise ValueError(f"n_resamples must be >= 1, got {self.n_resamples}")
        if not 0 < self.level < 1:
            raise ValueError(f"level must be in (0, 1), got {self.level}")
        if self.shapley_metric not in METRICS:
            raise ValueError(f"shapley_metric must be one of {METRICS}, got {self.shapley_metric!r}")
        if self.shapley_empty not in ("prior", "majority"):
            raise ValueError(f"shapley_empty must be 'prior' or 'majority', got {self.shapley_empty!r}")
        if isinstance(self.subgroups, str):
            self.subgroups = [self.subgroups]
        if self.reliability_bins not in ("adaptive", "quantile", "uniform"):
            raise ValueError(f"reliability_bins must be 'adaptive', 'quantile' or 'uniform', got {self.reliability_bins!r}")
        if isinstance(self.figure_formats, str):
            self.figure_formats = [f.strip() for f in self.figure_formats.split(",") if f.strip()]
        if self.figure_dpi < 50:
            raise ValueError(f"figure_dpi must be >= 50, got {self.figure_dpi}")


@dataclass
class Report:
    dataset: str
    task: str
    n_test: int
    seeds: int
    config: ReportConfig
    intervals: pd.DataFrame
    paired: pd.DataFrame
    calibration: pd.DataFrame
    reliability: pd.DataFrame
    subgroups: pd.DataFrame
    subgroup_gaps: pd.DataFrame
    missing: pd.DataFrame
    shapley: pd.DataFrame
    shapley_subsets: pd.DataFrame
    notes: List[str] = field(default_factory=list)  # what was skipped and why
    figures: Dict[str, Any] = field(default_factory=dict)  # name -> matplotlib Figure
    curves: Dict[str, Any] = field(default_factory=dict)  # y_test, classes, proba (model -> mean over seeds), best
    seconds: Dict[str, float] = field(default_factory=dict)  # time per section
    paths: Dict[str, str] = field(default_factory=dict)  # what save() wrote
    name: str = ""  # the dataset's own name, for figure titles (``dataset`` is its cache key, which may carry a hash)

    TABLES = ("intervals", "paired", "calibration", "reliability", "subgroups", "subgroup_gaps", "missing", "shapley",
              "shapley_subsets")

    def tables(self) -> Dict[str, pd.DataFrame]:
        return {k: getattr(self, k) for k in self.TABLES}

    def to_dict(self) -> Dict[str, Any]:
        """JSON-ready: the meta data, every table as a list of records, notes and timings."""
        return {"dataset": self.dataset, "task": self.task, "n_test": self.n_test, "seeds": self.seeds,
                "config": asdict(self.config), "notes": self.notes, "seconds": self.seconds,
                **{k: v.to_dict(orient="records") for k, v in self.tables().items()}}

    def save(self, out_dir: PathLike, name: str) -> Dict[str, str]:
        """Write ``<name>_report.json``, ``<name>_report.txt`` and each figure (``<name>_<figure>.png`` and, by
        default, ``.pdf``: ``config.figure_formats`` at ``config.figure_dpi``) into ``out_dir``."""
        out = Path(out_dir)
        paths = {"json": str(write_json(self.to_dict(), out / f"{name}_report.json"))}
        txt = out / f"{name}_report.txt"
        atomic_write_bytes(txt, lambda f: f.write(self.to_text().encode()))
        paths["text"] = str(txt)
        from ..viz import save_figure

        for key, fig in self.figures.items():
            if fig is not None:
                written = save_figure(fig, out / f"{name}_{key}.png", self.config.figure_dpi, self.config.figure_formats)
                paths[key] = str(written[0])
                for extra in written[1:]:
                    paths[f"{key}_{extra.suffix[1:]}"] = str(extra)
        self.paths = paths
        log.info("report written to %s (%s)", out, ", ".join(Path(p).name for p in paths.values()))
        return paths

    def tidy(self) -> Dict[str, pd.DataFrame]:
        """Every table as it is shown (a notebook's ``display``, :meth:`to_text`): the columns that matter, each
        value with its interval as one cell (``0.904 [0.876, 0.929]``), other numbers to 3 decimals. Keys:
        ``intervals``, ``paired``, ``calibration``, ``subgroups``, ``subgroup_gaps``, ``missing``, ``shapley``."""
        pct = f"{self.config.level:.0%}"

        def pick(table: pd.DataFrame, cols: Sequence[str]) -> pd.DataFrame:
            if table.empty:
                return pd.DataFrame(columns=list(cols))
            out = table[[c for c in cols if c in table.columns]].copy()
            for c in out.columns:
                if out[c].dtype.kind == "f":
                    out[c] = out[c].round(3)
            return out.reset_index(drop=True)

        iv = self.intervals.copy()
        for m in METRICS:
            if f"{m}_ci_low" in iv.columns:
                iv[f"{m} [{pct} CI]"] = [ci_text(v, lo, hi) for v, lo, hi in zip(iv[m], iv[f"{m}_ci_low"], iv[f"{m}_ci_high"])]
        pr = self.paired.copy()
        if not pr.empty:
            pr["difference [CI]"] = [ci_text(v, lo, hi, signed=True) for v, lo, hi in zip(pr["diff"], pr["ci_low"], pr["ci_high"])]
        sg = self.subgroups.copy()
        if not sg.empty:
            sg["macro_f1 [CI]"] = [ci_text(v, lo, hi) if s else "not scored" for v, lo, hi, s in
                                   zip(sg["macro_f1"], sg["macro_f1_ci_low"], sg["macro_f1_ci_high"], sg["scored"])]
        gp = self.subgroup_gaps.copy()
        if not gp.empty:
            gp = gp[gp["metric"].isin(["macro_f1", "roc_auc"])]
            gp["gap [CI]"] = [ci_text(v, lo, hi) for v, lo, hi in zip(gp["gap"], gp["ci_low"], gp["ci_high"])]
        ms = self.missing.copy()
        if not ms.empty:
            ms["macro_f1 drop [CI]"] = [ci_text(v, lo, hi, signed=True) for v, lo, hi in
                                        zip(ms["macro_f1_drop"], ms["macro_f1_drop_ci_low"], ms["macro_f1_drop_ci_high"])]
        sh = self.shapley.copy()
        if not sh.empty:
            sh["shapley [CI]"] = [ci_text(v, lo, hi, signed=True) for v, lo, hi in zip(sh["shapley"], sh["ci_low"], sh["ci_high"])]
        return {
            "intervals": pick(iv, ["model", "seeds", "n_test", *[f"{m} [{pct} CI]" for m in METRICS], "macro_f1_std",
                                   *(["note"] if "note" in iv.columns and iv["note"].notna().any() else [])]),
            "paired": pick(pr, ["model_a", "model_b", "metric", "difference [CI]", "p_value"]),
            "calibration": pick(self.calibration, ["model", "ece", "brier", "temperature", "ece_after", "brier_after"]),
            "subgroups": pick(sg, ["column", "group", "n", "model", "macro_f1 [CI]", "reason"]),
            "subgroup_gaps": pick(gp, ["column", "model", "metric", "gap [CI]", "worst_group", "best_group", "note"]),
            "missing": pick(ms, ["model", "modality", "stand_in", "macro_f1_full", "macro_f1_without", "macro_f1 drop [CI]"]),
            "shapley": pick(sh, ["model", "modality", "shapley [CI]", "value_full", "value_empty"]),
        }

    def to_text(self) -> str:
        """A plain-text rendering of every table (:meth:`tidy`), for terminals and logs."""
        pct = f"{self.config.level:.0%}"
        head = (f"Report: {self.dataset} ({self.task}, {self.n_test} test rows, {self.seeds} seed(s); {pct} stratified "
                f"bootstrap intervals, {self.config.n_resamples} resamples)")
        parts = [head, ""]
        tidy = self.tidy()

        def section(title: str, key: str, drop: Sequence[str] = ()) -> None:
            parts.append(title)
            table = tidy[key].drop(columns=list(drop), errors="ignore")
            parts.append("  (none)" if table.empty else table.to_string(index=False, float_format=lambda v: f"{v:.3f}"))
            parts.append("")

        section(f"Test metrics: mean over seeds [{pct} interval of that mean]", "intervals", ["n_test"])
        section("Paired differences (model_a - model_b, same test rows and resamples)", "paired")
        section("Calibration (ECE, Brier; after: temperature fitted on the validation split)", "calibration")
        section("Subgroups (test macro-F1 per group)", "subgroups")
        section("Worst-group gaps (best minus worst scored group)", "subgroup_gaps")
        section("Missing modality at test time (drop in macro-F1 when removed)", "missing")
        section(f"Shapley values over modalities (test {self.config.shapley_metric}; they sum to full - empty)", "shapley")
        if self.notes:
            parts.append("Notes:")
            parts.extend(f"- {n}" for n in self.notes)
        return "\n".join(parts).rstrip() + "\n"


def ci_text(value: float, low: float, high: float, signed: bool = False) -> str:
    if value is None or not np.isfinite(value):
        return "n/a"
    f = "{:+.3f}" if signed else "{:.3f}"
    if low is None or high is None or not (np.isfinite(low) and np.isfinite(high)):
        return f.format(value)
    return f"{f.format(value)} [{f.format(low)}, {f.format(high)}]"


class Columns:
    """Probability arrays of every model variant scored together, keyed by what they are."""

    def __init__(self) -> None:
        self.arrays: List[np.ndarray] = []
        self.index: Dict[Tuple, int] = {}
        self.hard: Dict[int, np.ndarray] = {}  # column -> hard predictions that override the probabilities'

    def add(self, key: Tuple, proba: np.ndarray, hard: Optional[np.ndarray] = None) -> int:
        self.index[key] = len(self.arrays)
        self.arrays.append(np.asarray(proba))
        if hard is not None:
            self.hard[self.index[key]] = hard
        return self.index[key]


def report(rows: TrainedHeads, out_dir: Optional[PathLike] = None, name: Optional[str] = None,
           config: Optional[ReportConfig] = None, **options: Any) -> Report:
    """Intervals, calibration, subgroups, missing modalities and Shapley values for the heads in ``rows``.

    ``rows``: what :func:`utils.experiment.train_heads` returned (it keeps the test / validation outputs and
    how the heads were trained). ``out_dir``: also save the report there (``<name>_report.json``, ``.txt`` and
    the PNG figures; ``name`` defaults to ``embed_model_<dataset>``). ``config`` / ``options``:
    :class:`ReportConfig` fields.
    """
    cfg = merge_config(ReportConfig, config, options, "report")
    if not isinstance(rows, TrainedHeads) or rows.recipe is None:
        raise TypeError("report() needs the rows returned by train_heads (they keep the test and validation outputs "
                        "and how the heads were trained); rows read back from JSON or concatenated with other lists "
                        "do not carry them. Call report() on train_heads(...)'s result directly.")
    keep = [i for i, o in enumerate(rows.outputs) if o is not None]
    if not keep:
        raise ValueError("report(): these rows kept no outputs; train them with train_heads(..., keep_outputs=True)")
    recipe = rows.recipe
    ds, spec = recipe.ds, recipe.ds.spec
    left = sorted({str(rows[i].get("model")) for i, o in enumerate(rows.outputs) if o is None})
    task = spec.task
    parts = recipe.parts
    y_test, y_val, y_train = (recipe.y[parts[s]] for s in ("test", "val", "train"))
    by_model: Dict[str, List[int]] = {}
    for i in keep:
        by_model.setdefault(rows[i]["model"], []).append(i)
    seeds = max(len(v) for v in by_model.values())
    notes: List[str] = []
    if left:
        notes.append(f"not in this report: {', '.join(left)} (their rows kept no test outputs; train them with "
                     "keep_outputs=True, or add them with rows += ... from train_heads / train_logreg)")
        log.warning("report(): %s", notes[-1])
    seconds: Dict[str, float] = {}

    # ---- every probability array to score: rows, rows with a modality removed, Shapley subsets, the prior
    t0 = time.perf_counter()
    cols = Columns()
    for i in keep:
        cols.add(("row", i), rows.outputs[i].test_proba)
        for m, kinds in rows.outputs[i].missing.items():
            for kind, proba in kinds.items():
                cols.add(("missing", i, m, kind), proba)
    cols.add(("prior",), prior_proba(y_train, task, len(spec.classes), len(y_test)),
             prior_predictions(y_train, task, len(spec.classes), len(y_test), cfg.seed) if cfg.shapley_empty == "prior" else None)
    shapley_plan = plan_shapley(rows, by_model, cfg, notes)
    for model, players in shapley_plan.items():
        for i in by_model[model]:
            seed = rows[i]["seed"]
            for S in all_subsets(players):
                if 0 < len(S) < len(players):
                    cols.add(("subset", model, seed, S), subset_proba(rows, model, list(S), seed))
    seconds["shapley_training"] = time.perf_counter() - t0

    # ---- one bootstrap over all of them
    t0 = time.perf_counter()
    boot_dev = bootstrap_device(cfg.device, len(y_test) * len(cols.arrays), cfg.n_resamples)
    table = ScoreTable(y_test, cols.arrays, task, hard=cols.hard, device=boot_dev)
    point = table.point()
    samples = table.samples(label_strata(y_test, task), cfg.n_resamples, cfg.seed)
    seconds["bootstrap"] = time.perf_counter() - t0
    log.debug("report: bootstrap on %s", boot_dev or "the CPU (numpy)")

    def of(model: str) -> List[int]:
        return [cols.index[("row", i)] for i in by_model[model]]

    t0 = time.perf_counter()
    intervals = interval_table(rows, by_model, of, samples, cfg.level, len(y_test))
    paired = paired_table(list(by_model), of, point, samples, cfg.level)
    missing = missing_table(rows, by_model, cols, point, samples, cfg.level)
    shapley, shapley_subsets = shapley_tables(rows, by_model, shapley_plan, cols, point, samples, cfg)
    seconds["tables"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    calibration, reliability = calibration_tables(rows, by_model, y_test, y_val, task, cfg, notes)
    seconds["calibration"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    subgroups, gaps = subgroup_tables(rows, by_model, ds, parts["test"], y_test, task, cfg, notes)
    seconds["subgroups"] = time.perf_counter() - t0

    rep = Report(spec.key, task, len(y_test), seeds, cfg, intervals, paired, calibration, reliability, subgroups, gaps,
                 missing, shapley, shapley_subsets, notes, seconds=seconds, name=spec.name,
                 curves=test_curves(rows, by_model, y_test, y_val, task, list(spec.classes)))
    if cfg.figures:
        t0 = time.perf_counter()
        rep.figures = draw_figures(rep)
        seconds["figures"] = time.perf_counter() - t0
    if out_dir is not None:
        t0 = time.perf_counter()
        rep.save(out_dir, name or f"embed_model_{spec.name}")
        seconds["save"] = time.perf_counter() - t0
    log.info("report of %d model(s) x %d seed(s): %s", len(by_model), seeds,
             ", ".join(f"{k} {v:.2f} s" for k, v in seconds.items()))
    return rep


# ------------------------------------------------------------------------------------------------ sections


def interval_table(rows, by_model, of, samples, level: float, n_test: int) -> pd.DataFrame:
    lines = []
    for model, idx in by_model.items():
        line: Dict[str, Any] = {"model": model, "seeds": len(idx), "n_test": n_test}
        for m in METRICS:
            vals = np.array([rows[i][m] for i in idx], dtype=np.float64)
            low, high = percentile_interval(mean_over(samples[m], [of(model)])[:, 0], level)
            line.update({m: float(np.mean(vals)), f"{m}_std": float(np.std(vals, ddof=1)) if len(vals) > 1 else math.nan,
                         f"{m}_ci_low": float(low), f"{m}_ci_high": float(high)})
        flat = [m for m in ("macro_f1", "roc_auc") if np.isfinite(line[f"{m}_ci_low"]) and line[f"{m}_ci_low"] == line[f"{m}_ci_high"]]
        notes = list(dict.fromkeys(n for i in idx for n in str(rows[i].get("interval_note") or "").split("; ")
                                   if n and not n.startswith("zero-width")))
        if flat:
            notes.append(f"zero-width interval for {', '.join(flat)} (every resample scored the same: not certainty)")
        line["note"] = "; ".join(notes) or None
        lines.append(line)
    return pd.DataFrame(lines)


def paired_table(models: Sequence[str], of, point, samples, level: float) -> pd.DataFrame:
    lines = []
    for a_i, a in enumerate(models):
        for b in models[a_i + 1:]:
            for m in ("macro_f1", "roc_auc"):
                sa, sb = mean_over(samples[m], [of(a)])[:, 0], mean_over(samples[m], [of(b)])[:, 0]
                pa, pb = float(np.mean(point[m][of(a)])), float(np.mean(point[m][of(b)]))
                lines.append({"model_a": a, "model_b": b, "metric": m, **paired_difference(sa, sb, pa, pb, level)})
    return pd.DataFrame(lines, columns=["model_a", "model_b", "metric", "diff", "ci_low", "ci_high", "p_value"])


def missing_table(rows, by_model, cols: Columns, point, samples, level: float) -> pd.DataFrame:
    lines = []
    for model, idx in by_model.items():
        first = rows.outputs[idx[0]]
        for m in first.missing:
            for kind in STAND_INS:
                full = [cols.index[("row", i)] for i in idx]
                without = [cols.index[("missing", i, m, kind)] for i in idx if ("missing", i, m, kind) in cols.index]
                if len(without) != len(full):
                    continue
                line: Dict[str, Any] = {"model": model, "modality": m, "stand_in": kind}
                for metric in ("macro_f1", "roc_auc"):
                    f, w = float(np.mean(point[metric][full])), float(np.mean(point[metric][without]))
                    d = mean_over(samples[metric], [full])[:, 0] - mean_over(samples[metric], [without])[:, 0]
                    low, high = percentile_interval(d, level)
                    line.update({f"{metric}_full": f, f"{metric}_without": w, f"{metric}_drop": f - w,
                                 f"{metric}_drop_ci_low": float(low), f"{metric}_drop_ci_high": float(high)})
                lines.append(line)
    return pd.DataFrame(lines)


def plan_shapley(rows: TrainedHeads, by_model, cfg: ReportConfig, notes: List[str]) -> Dict[str, List[str]]:
    """Fusion head -> its modalities (the players), for the heads whose Shapley values are computed."""
    if not cfg.shapley:
        return {}
    from ..models.fusion import HEADS

    fusion = {m: rows.outputs[idx[0]].modalities for m, idx in by_model.items()
              if len(rows.outputs[idx[0]].modalities) > 1 and m in HEADS.names()}  # heads that can be retrained
    wanted = list(fusion) if cfg.shapley_heads is None else list(cfg.shapley_heads)
    plan = {}
    for model in wanted:
        if model not in fusion:
            raise ValueError(f"report(shapley_heads=...): {model!r} is not a fusion head of this comparison; "
                             f"fusion heads: {list(fusion)}")
        if len(fusion[model]) > cfg.max_shapley_modalities:
            notes.append(f"Shapley values of {model} skipped: {len(fusion[model])} modalities need "
                         f"{2 ** len(fusion[model])} subsets (max_shapley_modalities={cfg.max_shapley_modalities})")
            continue
        plan[model] = list(fusion[model])
    if not fusion:
        notes.append("no fusion head in the comparison: no missing-modality or Shapley analysis")
    return plan


def subset_proba(rows: TrainedHeads, model: str, subset: List[str], seed: int) -> np.ndarray:
    """Test probabilities of head ``model`` restricted to ``subset``: an existing row that is that head (same seed),
    else a head trained now with the comparison's recipe."""
    from ..models.fusion import subset_head

    same = subset_head(model, subset)
    for i, row in enumerate(rows):
        out = rows.outputs[i]
        if (out is not None and row["model"] == same and row["seed"] == seed
                and sorted(out.modalities) == sorted(subset)):
            return out.test_proba
    log.info("Shapley: training %s on %s (seed %d)", model, "+".join(subset), seed)
    return fit_head(model, subset, rows.recipe, seed, keep_outputs=False).proba


def shapley_tables(rows, by_model, plan, cols: Columns, point, samples, cfg: ReportConfig) -> Tuple[pd.DataFrame, pd.DataFrame]:
    from ..models.fusion import subset_head

    metric = cfg.shapley_metric
    lines, subsets = [], []
    prior = cols.index[("prior",)]
    for model, players in plan.items():
        idx = by_model[model]
        val_point, val_samples = {}, {}
        for S in all_subsets(players):
            if len(S) == 0:
                c = [prior]
                source = ("prior predictor (classes drawn with the training shares)" if cfg.shapley_empty == "prior"
                          else "majority-class predictor")
            elif len(S) == len(players):
                c, source = [cols.index[("row", i)] for i in idx], "the head's rows"
            else:
                c = [cols.index[("subset", model, rows[i]["seed"], S)] for i in idx]
                same = subset_head(model, list(S))
                source = f"rows of {same}" if same != model and same in by_model else f"{model} trained on the subset"
            val_point[S] = float(np.mean(point[metric][c]))
            val_samples[S] = mean_over(samples[metric], [c])[:, 0]
            subsets.append({"model": model, "subset": "+".join(p for p in players if p in S) or "(empty)",
                            metric: val_point[S], "source": source})
        phi = shapley_values(val_point, players)
        phi_s = shapley_values(val_samples, players)
        full, empty = val_point[frozenset(players)], val_point[frozenset()]
        for p in players:
            low, high = percentile_interval(phi_s[p], cfg.level)
            lines.append({"model": model, "modality": p, "shapley": float(phi[p]), "ci_low": float(low),
                          "ci_high": float(high), "value_full": full, "value_empty": empty})
    return pd.DataFrame(lines), pd.DataFrame(subsets)


TEMPERATURE_BOUNDS = (0.05, 20.0)  # the search range of the fitted temperature


def calibration_tables(rows, by_model, y_test, y_val, task: str, cfg: ReportConfig,
                       notes: Optional[List[str]] = None) -> Tuple[pd.DataFrame, pd.DataFrame]:
    from .steps import MIN_VAL_CLASS_ROWS

    notes = notes if notes is not None else []
    lines, bins = [], []
    y_v = np.asarray(y_val)
    n_classes = max(2, int(np.max(y_test)) + 1 if len(y_test) else 0, int(np.max(y_v)) + 1 if len(y_v) else 0)
    per_class = y_v.sum(axis=0) if y_v.ndim == 2 else np.bincount(y_v.astype(int), minlength=n_classes)
    fit_ok = cfg.temperature_scaling and len(y_v) and int(np.min(per_class)) >= MIN_VAL_CLASS_ROWS
    if cfg.temperature_scaling and not fit_ok:
        notes.append(f"temperature scaling not fitted: the validation split holds {int(np.min(per_class)) if len(y_v) else 0} "
                     f"row(s) of its smallest class (fewer than {MIN_VAL_CLASS_ROWS}), and a temperature fitted on so few "
                     "is noise; ECE and Brier after scaling are left empty")
    at_bound = []
    for model, idx in by_model.items():
        per_seed = []
        before_p, after_p = [], []
        for i in idx:
            out = rows.outputs[i]
            rec = {"ece": ece(y_test, out.test_proba, task, cfg.n_bins), "brier": brier(y_test, out.test_proba, task)}
            before_p.append(out.test_proba)
            if fit_ok and len(out.val_logits):
                T = fit_temperature(out.val_logits, y_val, task, TEMPERATURE_BOUNDS)
                scaled = apply_temperature(out.test_logits, T, task)
                rec.update(temperature=T, ece_after=ece(y_test, scaled, task, cfg.n_bins), brier_after=brier(y_test, scaled, task))
                after_p.append(scaled)
                if not TEMPERATURE_BOUNDS[0] * 1.01 < T < TEMPERATURE_BOUNDS[1] * 0.99 and model not in at_bound:
                    at_bound.append(model)
            elif cfg.temperature_scaling:
                rec.update(temperature=math.nan, ece_after=math.nan, brier_after=math.nan)
            per_seed.append(rec)
        line = {"model": model, **{k: float(np.mean([r[k] for r in per_seed])) for k in per_seed[0]}}
        lines.append(line)
        y_all = np.concatenate([y_test] * len(idx))
        stages = [("before", before_p)] + ([("after temperature scaling", after_p)] if after_p else [])
        for stage, probas in stages:
            p_all = np.concatenate(probas)
            b = reliability_bins(y_all, p_all, task, cfg.n_bins, strategy=cfg.reliability_bins, level=cfg.level)
            if len(idx) > 1:  # the seeds score the same test rows: the interval counts each row once, not once per seed
                from ..evaluation import wilson_interval

                rows_in_bin = b["count"].to_numpy() / len(idx)
                b["accuracy_ci_low"], b["accuracy_ci_high"] = wilson_interval(b["accuracy"].to_numpy() * rows_in_bin,
                                                                              rows_in_bin, cfg.level)
            b.insert(0, "stage", stage)
            b.insert(0, "model", model)
            b["ece"] = ece(y_all, p_all, task, cfg.n_bins)
            bins.append(b)
    if at_bound:
        notes.append(f"the temperature of {', '.join(at_bound)} reached the edge of its search {TEMPERATURE_BOUNDS}: the "
                     "validation logits hardly vary with the labels, so the scaled scores are near a constant guess")
    return pd.DataFrame(lines), pd.concat(bins, ignore_index=True) if bins else pd.DataFrame()


def test_curves(rows, by_model, y_test, y_val, task: str, classes: List[str]) -> Dict[str, Any]:
    """What the ROC / PR curves and the confusion matrix are drawn from: each head's test probabilities
    (mean over its seeds), the test labels, and the head best on *validation* macro-F1 (mean over seeds; the
    confusion matrix shows that one, so the figure does not pick its head by the test split it shows)."""
    from ..evaluation import logits_probabilities
    from ..metrics import classification_metrics

    proba, val_score = {}, {}
    for model, idx in by_model.items():
        proba[model] = np.mean([np.asarray(rows.outputs[i].test_proba, np.float64) for i in idx], axis=0)
        scores = [classification_metrics(y_val, logits_probabilities(rows.outputs[i].val_logits, task), task, classes)["macro_f1"]
                  for i in idx if len(rows.outputs[i].val_logits)]
        val_score[model] = float(np.nanmean(scores)) if scores and np.isfinite(scores).any() else -np.inf
    best = max(val_score, key=lambda m: val_score[m]) if val_score else None
    return {"y_test": y_test, "classes": classes, "proba": proba, "best": best, "best_val_macro_f1": val_score.get(best)}


def subgroup_columns(ds, cfg: ReportConfig, notes: List[str]) -> List[str]:
    listed = list(cfg.subgroups) if cfg.subgroups is not None else list(ds.spec.extra.get("subgroups") or [])
    if cfg.subgroups is not None:
        unknown = [c for c in listed if c not in ds.df.columns]
        if unknown:
            raise ValueError(f"report(subgroups=...): dataset {ds.spec.key!r} has no column(s) {unknown}; its columns: "
                             f"{list(ds.df.columns)}")
    else:
        absent = [c for c in listed if c not in ds.df.columns]
        if absent:
            notes.append(f"subgroup column(s) {absent} listed by the dataset are not in its table: skipped")
        listed = [c for c in listed if c in ds.df.columns]
    if not listed:
        notes.append(f"no subgroup columns: dataset {ds.spec.key!r} lists none in spec.extra['subgroups']; "
                     "pass report(..., subgroups=['column', ...])")
    return listed


def subgroup_tables(rows, by_model, ds, test_rows, y_test, task: str, cfg: ReportConfig, notes: List[str]):
    columns = subgroup_columns(ds, cfg, notes)
    probas = {model: [rows.outputs[i].test_proba for i in idx] for model, idx in by_model.items()}
    tables, gaps = [], []
    for col in columns:
        groups = group_labels(ds.df[col].iloc[test_rows].to_numpy(), col).to_numpy()
        t, g = subgroup_metrics(y_test, probas, groups, task, cfg.min_group_size, cfg.n_resamples, cfg.seed, cfg.level,
                                SUBGROUP_METRICS)
        t.insert(0, "column", col)
        g.insert(0, "column", col)
        tables.append(t)
        gaps.append(g)
        small = sorted(set(t.loc[~t["scored"], "group"]))
        if small:
            notes.append(f"subgroups of {col!r} too small to score (< {cfg.min_group_size} test rows): {small}")
    empty = pd.DataFrame()
    return (pd.concat(tables, ignore_index=True) if tables else empty), (pd.concat(gaps, ignore_index=True) if gaps else empty)


def draw_figures(rep: Report) -> Dict[str, Any]:
    """The report's figures (those with data): ROC / PR curves, confusion matrix of the head best on validation,
    reliability, subgroups, missing modalities, Shapley values; closed in pyplot."""
    from .. import viz

    figs: Dict[str, Any] = {}
    shown = rep.name or rep.dataset
    title = f"{shown} (test n={rep.n_test}, {rep.seeds} seed{'s' if rep.seeds != 1 else ''})"
    curves = rep.curves
    if curves.get("proba"):
        y = curves["y_test"]
        data = {m: (y, p) for m, p in curves["proba"].items()}
        positive = str(curves["classes"][1]) if rep.task == "binary" and len(curves["classes"]) > 1 else ""
        figs["roc_pr"] = viz.roc_pr_curves(data, rep.task, title=title, positive=positive)
        best = curves.get("best")
        if best is not None and rep.task in ("binary", "multiclass"):
            classes = curves["classes"]
            p = np.asarray(curves["proba"][best])
            pred = (p.reshape(-1) >= 0.5).astype(int) if rep.task == "binary" else p.argmax(axis=1)
            figs["confusion"] = viz.prediction_confusion(
                [classes[int(i)] for i in y], [classes[int(i)] for i in pred], classes,
                title=f"{viz.label(best)} (best on validation)\n{shown}, test n={rep.n_test}")
    if not rep.reliability.empty:
        figs["reliability"] = viz.reliability_diagram(rep.reliability, title=f"Reliability: {title}")
    if not rep.subgroups.empty:
        figs["subgroups"] = viz.subgroup_plot(rep.subgroups, title=f"Subgroups: {title}")
    if not rep.missing.empty:
        figs["missing"] = viz.missing_modality_plot(rep.missing, title=f"A modality missing at test time: {title}")
    if not rep.shapley.empty:
        figs["shapley"] = viz.shapley_plot(rep.shapley, title=f"What each modality adds: {title}")
    return {k: viz.detach(f) for k, f in figs.items()}  # shown where a notebook displays them, not all at once
