"""Figures. Every function returns a matplotlib Figure (and saves it as PNG when given a path);
nothing calls ``plt.show()``, so notebooks display them and papermill / scripts never block."""

from __future__ import annotations

from pathlib import Path
from typing import Optional, Sequence

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


def save_figure(fig, path: Optional[str | Path], dpi: int = 130) -> None:
    if path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=dpi, bbox_inches="tight")


def metric_bars(
    table: pd.DataFrame, metrics: Sequence[str], path: Optional[str | Path] = None, title: str = "", model_col: str = "model"
):
    """Grouped bars: one group per metric, one bar per model (error bars from ``<metric>_std`` columns)."""
    import seaborn as sns

    plt = _pyplot()
    long = table.melt(id_vars=[model_col], value_vars=list(metrics), var_name="metric", value_name="value")
    fig, ax = plt.subplots(figsize=(1.6 + 1.9 * len(metrics), 4))
    sns.barplot(data=long, x="metric", y="value", hue=model_col, ax=ax, errorbar=None)
    stds = [f"{m}_std" for m in metrics]
    if all(s in table.columns for s in stds):
        for container, (_, row) in zip(ax.containers, table.iterrows()):
            xs = [bar.get_x() + bar.get_width() / 2 for bar in container]
            ax.errorbar(xs, [row[m] for m in metrics], yerr=[row[s] for s in stds], fmt="none", ecolor="black", capsize=3)
    for container in ax.containers:
        ax.bar_label(container, fmt="%.2f", fontsize=7, padding=1)
    ax.set_ylim(0, 1.08)
    ax.set_xlabel("")
    ax.set_ylabel("test score")
    ax.legend(title="", fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    if title:
        ax.set_title(title, fontsize=9)
    fig.tight_layout()
    save_figure(fig, path)
    return fig
