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
