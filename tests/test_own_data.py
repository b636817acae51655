"""Issue 19: one's own table through the CLI and the API, first try. Each trap found from outside has a test
that failed before: image paths resolved against the data folder instead of the table's, root= refused in
--dataset-options, a relative file= looked up only under <data-dir>/table, printed result paths that were not
the written ones, on_missing_image='drop' returning a dataset with no rows."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

from utils import data
from utils.__main__ import main
from utils.data import DatasetError


def _own_folder(folder: Path, n: int = 40) -> Path:
    """records.csv with relative image paths (imgs/<i>.png) beside it, as a user makes one."""
    from PIL import Image

    (folder / "imgs").mkdir(parents=True)
    rng = np.random.default_rng(0)
    rows = ["id,caption,file,diagnosis"]
    for i in range(n):
        c = ["benign", "malignant"][i % 2]
        Image.fromarray(rng.integers(0, 255, (16, 16, 3), dtype=np.uint8)).save(folder / "imgs" / f"{i}.png")
        rows.append(f"p{i},a lesion photo number {i},imgs/{i}.png,{c}")
    (folder / "records.csv").write_text("\n".join(rows) + "\n")
    return folder / "records.csv"


OPTS = {"text_column": "caption", "image_column": "file", "label_column": "diagnosis", "id_column": "id"}


def test_image_paths_are_relative_to_the_tables_own_folder(tmp_path):
    table = _own_folder(tmp_path / "study" / "sub")
    ds = data.load("table", root=tmp_path / "study", file="sub/records.csv", **OPTS)  # the CSV is one level down
    assert len(ds) == 40 and Path(ds.spec.root) == table.parent.resolve()
    os.remove(table.parent / "imgs" / "3.png")
    with pytest.raises(DatasetError, match=r"looked up in .*sub .*image_base="):
        data.load("table", root=tmp_path / "study", file="sub/records.csv", **OPTS)


def test_drop_that_would_leave_no_rows_is_an_error_not_an_empty_dataset(tmp_path):
    table = _own_folder(tmp_path / "d")
    for p in (table.parent / "imgs").iterdir():
        p.unlink()
    with pytest.raises(DatasetError, match=r"on_missing_image='drop' would leave no rows at all"):
        data.load("table", root=tmp_path / "d", on_missing_image="drop", **OPTS)


@pytest.mark.parametrize("how", ["root", "relative_file", "absolute_file"])
def test_cli_own_table_first_try(tmp_path, tiny_bert, capsys, monkeypatch, how):
    table = _own_folder(tmp_path / "mydata")
    monkeypatch.chdir(tmp_path)
    opts = dict(OPTS, **{"root": {"root": str(tmp_path / "mydata")}, "relative_file": {"file": "mydata/records.csv"},
                         "absolute_file": {"file": str(table)}}[how])
    code = main(["--dataset", "table", "--dataset-options", json.dumps(opts), "--text", f"hf:{tiny_bert}",
                 "--image", "timm:test_vit", "--image-options", '{"pretrained": false}', "--epochs", "1",
                 "--no-report", "--results-dir", str(tmp_path / "results"), "--embeddings-dir", str(tmp_path / "emb")])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert out.splitlines()[0].startswith("folders: data ") and str(tmp_path / "results") in out.splitlines()[0]
    saved = next(line for line in out.splitlines() if line.startswith("saved: "))
    first = saved.split("saved: ", 1)[1].split(",", 1)[0]
    assert Path(first).is_file(), saved  # the printed path is the written one
    assert Path(first).name == "embed_model_table-records.json"
    # the file checks are cached in the run's embeddings folder, not in the default one (MMFUSION_EMBEDDINGS_DIR)
    assert list((tmp_path / "emb" / ".media-cache").glob("*.npz"))
    assert not (tmp_path / "embeddings" / ".media-cache").exists()


def test_run_from_outside_the_repository_writes_where_it_was_started(tmp_path, monkeypatch):
    from utils import config

    for var in (config.ENV_HOME, config.ENV_DATA, config.ENV_EMBEDDINGS, config.ENV_RESULTS):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setattr(config, "_dotenv_cache", {})
    monkeypatch.chdir(tmp_path)
    assert config.embeddings_dir() == tmp_path.resolve() / "embeddings"
    repo = Path(config.__file__).resolve().parents[1]
    monkeypatch.chdir(repo / "notebooks")  # the notebooks share the repository's folders
    assert config.embeddings_dir() == repo / "embeddings"


def test_cli_heads_option_trains_only_those_and_refuses_an_unknown_one(tmp_path, tiny_bert, capsys):
    args = ["--dataset-options", '{"n": 90}', "--text", f"hf:{tiny_bert}", "--image", "timm:test_vit",
            "--image-options", '{"pretrained": false}', "--epochs", "1", "--no-report", "--no-save-model",
            "--results-dir", str(tmp_path), "--embeddings-dir", str(tmp_path / "emb")]
    assert main(args + ["--heads", "early_fusion, text_only"]) == 0
    rows = json.loads((tmp_path / "embed_model_synthetic.json").read_text())
    assert sorted({r["model"] for r in rows}) == ["early_fusion", "text_only"]
    capsys.readouterr()
    assert main(args + ["--heads", "early_fusion,erly_fusion"]) == 2
    err = capsys.readouterr().err
    assert "unknown head(s) ['erly_fusion']" in err and "late_fusion" in err


def test_a_dataframe_and_in_memory_images_load_like_the_csv(tmp_path, monkeypatch):
    """Issue 19: no in-memory input. load("table", df=...) takes a pandas DataFrame (image paths relative to the
    working directory) and in-memory images (PIL images, encoded bytes, Hugging Face {"bytes", "path"} dicts),
    written once under <root>/media and read from there; the result equals the CSV's."""
    import io

    import pandas as pd
    from PIL import Image

    table = _own_folder(tmp_path / "mydata")
    from_csv = data.load("table", root=tmp_path / "mydata", name="study", **OPTS)
    monkeypatch.chdir(tmp_path / "mydata")
    frame = pd.read_csv(table, dtype=str)
    from_df = data.load("table", df=frame, name="study", **OPTS)
    cols = ["id", "text", "label", "split"]
    assert from_df.df[cols].equals(from_csv.df[cols])
    assert [Path(from_df.spec.root) / p for p in from_df.df["image_path"]] == \
        [Path(from_csv.spec.root) / p for p in from_csv.df["image_path"]]

    def as_bytes(p):
        return (tmp_path / "mydata" / p).read_bytes()

    kinds = [lambda p: Image.open(tmp_path / "mydata" / p).copy(), as_bytes, lambda p: {"bytes": as_bytes(p), "path": p}]
    mem = frame.copy()
    mem["file"] = [kinds[i % 3](p) for i, p in enumerate(frame["file"])]
    media = tmp_path / "media-root"
    ds = data.load("table", df=mem, root=media, **OPTS)
    assert len(ds) == 40 and len(list((media / "media").iterdir())) == 40
    for k in (0, 1, 2):  # every kind decodes to the pixels of its file
        got = np.asarray(Image.open(Path(ds.spec.root) / ds.df["image_path"].iloc[k]).convert("RGB"))
        want = np.asarray(Image.open(table.parent / frame["file"].iloc[k]).convert("RGB"))
        assert np.array_equal(got, want)
    before = {p.name: p.stat().st_mtime_ns for p in (media / "media").iterdir()}
    data.load("table", df=mem, root=media, **OPTS)
    assert {p.name: p.stat().st_mtime_ns for p in (media / "media").iterdir()} == before  # written once

    class FakeHFDataset:  # what datasets.Dataset offers the loader
        def to_pandas(self):
            return mem

    assert len(data.load("table", df=FakeHFDataset(), root=media, **OPTS)) == 40
    mixed = mem.copy()
    mixed.loc[0, "file"] = "imgs/0.png"
    with pytest.raises(DatasetError, match="mixes file paths and in-memory images"):
        data.load("table", df=mixed, root=media, **OPTS)


def test_the_readmes_python_block_for_own_data_runs_as_written(tmp_path, monkeypatch):
    """The five lines of Python in the README's "Your own data", run as written (only the folder replaced) with
    the offline default models, on a folder made like a user's."""
    import re

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    block = re.search(r"<!-- own-data-python[^>]*-->\s*```python\n(.*?)```", readme, re.S).group(1)
    assert len(block.strip().splitlines()) <= 5
    _own_folder(tmp_path / "mydata")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MMFUSION_EMBEDDINGS_DIR", str(tmp_path / "emb"))
    code = block.replace("/path/to/mydata", str(tmp_path / "mydata"))
    namespace: dict = {}
    exec(compile(code, "README own-data block", "exec"), namespace)
    assert (tmp_path / "results" / "models" / "mine" / "model.safetensors").is_file()
    assert len(namespace["rows"]) == 4


def test_an_extractor_that_cannot_load_stops_the_job_before_any_extraction_and_leaves_nothing(tmp_path, tiny_bert):
    """Issue 19: a model that cannot load (a hub id offline) was found only after the other modality had been
    embedded, and a partial store folder was left behind."""
    from utils import experiment as ex
    from utils.embed import embed
    from utils.extractors import ExtractorError, create

    ds = ex.load_dataset("synthetic", n=60)
    with pytest.raises(ExtractorError, match="could not load"):
        ex.extract_embeddings(ds, {"text": f"hf:{tiny_bert}", "image": f"hf-image:{tmp_path / 'no-such-model'}"},
                              embeddings_dir=tmp_path / "emb", show_progress=False)
    assert not list((tmp_path / "emb").rglob("manifest.json")) if (tmp_path / "emb").exists() else True
    with pytest.raises(ExtractorError):
        embed(ds, "image", create(f"hf-image:{tmp_path / 'no-such-model'}"), root=tmp_path / "emb2", show_progress=False)
    assert not (tmp_path / "emb2").exists() or not any((tmp_path / "emb2").rglob("*.json"))


def test_the_media_check_cache_follows_the_embeddings_folder_given_to_load(tmp_path, monkeypatch):
    _own_folder(tmp_path / "d", n=6)
    monkeypatch.setenv("MMFUSION_EMBEDDINGS_DIR", str(tmp_path / "from_env"))
    data.load("table", root=tmp_path / "d", **OPTS)
    assert len(list((tmp_path / "from_env" / ".media-cache").glob("*.npz"))) == 1
    ds = data.load("table", root=tmp_path / "d", embeddings_dir=tmp_path / "given", **OPTS)
    assert len(list((tmp_path / "given" / ".media-cache").glob("*.npz"))) == 1
    assert ds.take([0, 1]).embeddings_dir == str(tmp_path / "given")  # a subset keeps the folder
