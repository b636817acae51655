"""Issue 19: one's own table through the CLI and the API, first try. Each trap found from outside has a test
that failed before: image paths resolved against the data folder instead of the table's, root= refused in
--dataset-options, a relative file= looked up only under <data-dir>/table, printed result paths that were not
the written ones, on_missing_image='drop' returning a dataset with no rows."""

from __future__ import annotations

import ast
import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from utils import data
from utils.__main__ import main
from utils.data import DatasetError

REPO = Path(__file__).resolve().parents[1]
HEADS = ["early_fusion", "late_fusion", "text_only", "image_only"]


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
    # a datasets Image column built from local files holds {"bytes": None, "path": ...}: read as that path (it
    # was taken for a file named "{'bytes': None, 'path': ...}" and every image was "not found")
    by_reference = frame.copy()
    by_reference["file"] = [{"bytes": None, "path": p} for p in frame["file"]]
    from_ref = data.load("table", df=by_reference, name="study", **OPTS)
    assert from_ref.df[cols].equals(from_csv.df[cols]) and list(from_ref.df["image_path"]) == list(from_df.df["image_path"])
    mixed = mem.copy()
    mixed.loc[0, "file"] = "imgs/0.png"
    with pytest.raises(DatasetError, match="mixes file paths and in-memory images"):
        data.load("table", df=mixed, root=media, **OPTS)


def _own_photos(folder: Path, n: int = 40, seed: int = 0) -> Path:
    """records.csv beside images/ of real JPEG and PNG files (relative paths), as a user brings them: a planted
    signal in each modality. Benign: a small round light-brown spot and a caption with two of five 'benign' words;
    malignant: a large dark irregular spot and two of five other words. The file format does not follow the class."""
    from PIL import Image, ImageDraw, ImageFilter

    rng = np.random.default_rng(seed)
    (folder / "images").mkdir(parents=True)
    words = {"benign": ["small", "round", "even", "light", "regular"],
             "malignant": ["large", "irregular", "dark", "uneven", "spreading"]}
    rows = ["id,caption,file,diagnosis"]
    for i in range(n):
        c = ["benign", "malignant"][i % 2]
        im = Image.new("RGB", (96, 96), tuple(int(v) for v in rng.integers([200, 150, 120], [235, 185, 160])))
        draw = ImageDraw.Draw(im)
        cx, cy = (int(v) for v in rng.integers(38, 58, size=2))
        if c == "benign":
            r = int(rng.integers(9, 14))
            draw.ellipse([cx - r, cy - r, cx + r, cy + r], fill=(150, 100, 70))
        else:
            radii = rng.integers(18, 34, size=8)
            draw.polygon([(cx + int(r * np.cos(a)), cy + int(r * np.sin(a)))
                          for a, r in zip(np.linspace(0, 2 * np.pi, 9)[:-1], radii)], fill=(50, 25, 20))
        ext = "jpg" if i % 4 < 2 else "png"
        im.filter(ImageFilter.GaussianBlur(1)).save(folder / "images" / f"lesion_{i:03d}.{ext}",
                                                    **({"quality": 90} if ext == "jpg" else {}))
        w = rng.choice(words[c], size=2, replace=False)
        rows.append(f"p{i:03d},a {w[0]} {w[1]} skin lesion on the arm,images/lesion_{i:03d}.{ext},{c}")
    (folder / "records.csv").write_text("\n".join(rows) + "\n")
    return folder / "records.csv"


@pytest.fixture(scope="module")
def photo_study(tmp_path_factory):
    """``(folder, embeddings)``: a user's folder of 40 records with real images, and one embeddings folder shared
    by the README's three ways in, so the offline default models embed it once per test worker."""
    base = tmp_path_factory.mktemp("own")
    _own_photos(base / "mydata")
    return base / "mydata", base / "embeddings"


def _own_data_section() -> str:
    readme = (REPO / "README.md").read_text()
    return re.search(r"^## Your own data\n(.*?)^## ", readme, re.S | re.M).group(1)


def _readme_command(program: str) -> str:
    """The one-line shell command of the README's "Your own data" that starts with ``program``, as written."""
    blocks = [b.strip() for b in re.findall(r"```bash\n(.*?)```", _own_data_section(), re.S)]
    found = [b for b in blocks if b.startswith(program)]
    assert len(found) == 1 and "\n" not in found[0], found
    assert "/path/to/mydata" in found[0]
    return found[0]


def _as_a_user_runs_it(embeddings: Path) -> dict:
    """The environment of a shell in a fresh clone: no folder settings (the defaults are made in the working
    directory) except the shared embeddings folder; this checkout's package importable; one thread."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MMFUSION_")}
    env["MMFUSION_EMBEDDINGS_DIR"] = str(embeddings)
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    env["OMP_NUM_THREADS"] = "1"  # tiny heads: two threads spin-waiting on a shared 2-core CI machine take 10x longer
    return env


def _scores_of_a_planted_signal(results: Path, stem: str) -> dict:
    rows = json.loads((results / f"{stem}.json").read_text())
    scores = {r["model"]: r["macro_f1"] for r in rows}
    assert sorted(scores) == sorted(HEADS)
    # each modality alone carries the label: a head only scores this well when every row's own text and own
    # image were read (an image resolved against another folder is an error; a misaligned one scores ~0.5)
    assert min(scores.values()) >= 0.8, scores
    assert all(r["n_test"] == 6 for r in rows), [r["n_test"] for r in rows]  # 40 rows: 28 / 6 / 6
    return scores


@pytest.mark.slow
def test_the_readmes_cli_command_for_own_data_runs_as_written(photo_study, tmp_path):
    """The README's one CLI command for one's own folder, parsed out of README.md and run in a shell as written
    (only the folder replaced), with the offline default models: results named by the dataset's key, the report,
    the figures in PNG and PDF, the model folder, and the paths it prints are the ones it wrote."""
    folder, embeddings = photo_study
    argv = shlex.split(_readme_command("python -m utils").replace("/path/to/mydata", str(folder)))
    assert argv[:3] == ["python", "-m", "utils"]
    work = tmp_path / "work"
    work.mkdir()
    proc = subprocess.run([sys.executable, *argv[1:]], cwd=work, env=_as_a_user_runs_it(embeddings),
                          capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-4000:]
    out = proc.stdout.splitlines()
    results = work / "results"
    assert out[0] == f"folders: data {work / 'data'}, embeddings {embeddings}, results {results}"
    stem = "embed_model_table-records"
    _scores_of_a_planted_signal(results, stem)
    for suffix in (".csv", ".png", ".pdf", "_report.json", "_report.txt", "_roc_pr.png", "_roc_pr.pdf",
                   "_confusion.png", "_reliability.png", "_missing.png", "_shapley.png"):
        assert (results / f"{stem}{suffix}").is_file(), suffix
    model = results / "models" / stem
    assert (model / "model.safetensors").is_file() and (model / "config.json").is_file()
    saved = next(line for line in out if line.startswith("saved: "))
    assert saved.startswith(f"saved: {results / stem}.json, .csv, .png and .pdf; report: ")
    assert f"model: {model}" in saved
    assert f"python -m utils predict --model {model} " in proc.stdout


@pytest.mark.slow
def test_the_readmes_papermill_command_for_own_data_runs_as_written(photo_study, tmp_path):
    """The README's papermill call, parsed out of README.md and run as written from a clone's root (only the folder
    replaced): the executed notebook and the results named by the dataset's key, with the report and figures."""
    import nbformat

    folder, embeddings = photo_study
    argv = shlex.split(_readme_command("papermill").replace("/path/to/mydata", str(folder)))
    work = tmp_path / "clone"
    work.mkdir()
    (work / "notebooks").symlink_to(REPO / "notebooks", target_is_directory=True)  # the paths a clone's root has
    proc = subprocess.run([sys.executable, "-m", "papermill", *argv[1:]], cwd=work,
                          env=_as_a_user_runs_it(embeddings), capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-4000:]
    executed = nbformat.read(work / argv[2], as_version=4)
    injected = next(c for c in executed.cells if "injected-parameters" in c.metadata.get("tags", []))
    options = ast.literal_eval(re.search(r"^DATASET_OPTIONS = (.*)$", injected.source, re.M).group(1))
    assert options == {"root": str(folder), "text_column": "caption", "image_column": "file", "label_column": "diagnosis"}
    results = work / "results"
    stem = "embed_model_table-records"
    _scores_of_a_planted_signal(results, stem)
    for suffix in (".png", ".pdf", "_report.json", "_roc_pr.png", "_confusion.png", "_reliability.png"):
        assert (results / f"{stem}{suffix}").is_file(), suffix


def test_the_readmes_python_block_for_own_data_runs_as_written(photo_study, tmp_path, monkeypatch):
    """The five lines of Python in the README's "Your own data", run as written (only the folder replaced) with
    the offline default models, on a folder made like a user's."""
    readme = (REPO / "README.md").read_text()
    block = re.search(r"<!-- own-data-python[^>]*-->\s*```python\n(.*?)```", readme, re.S).group(1)
    assert len(block.strip().splitlines()) <= 5
    folder, embeddings = photo_study
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MMFUSION_EMBEDDINGS_DIR", str(embeddings))
    code = block.replace("/path/to/mydata", str(folder))
    namespace: dict = {}
    exec(compile(code, "README own-data block", "exec"), namespace)
    assert (tmp_path / "results" / "models" / "mine" / "model.safetensors").is_file()
    scores = {r["model"]: r["macro_f1"] for r in namespace["rows"]}
    assert sorted(scores) == sorted(HEADS) and min(scores.values()) >= 0.8, scores


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


# ------------------------------------------------------------------ every option shown works in every way in
def _readme_table_options() -> dict:
    """The keyword options of the load("table", ...) call that the README's "Your own table" shows."""
    import ast

    readme = (REPO / "README.md").read_text()
    section = re.search(r"^### Your own table\n(.*?)^## ", readme, re.S | re.M).group(1)
    block = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    call = ast.parse(block).body[0].value
    assert isinstance(call, ast.Call) and call.func.id == "load" and ast.literal_eval(call.args[0]) == "table"
    return {k.arg: ast.literal_eval(k.value) for k in call.keywords}


def _study_for_options(folder: Path) -> None:
    """A cp1252 table with every column the documented options name; its images one folder up from a copy."""
    from PIL import Image

    (folder / "images").mkdir(parents=True)
    (folder / "tables").mkdir()
    rng = np.random.default_rng(1)
    lines = ["key,caption,file,diagnosis,site,sex,fold,patient"]
    for i in range(30):
        Image.fromarray(rng.integers(0, 255, (12, 12, 3), dtype=np.uint8)).save(folder / "images" / f"{i}.png")
        c = ["benign", "malignant"][i % 2]
        fold = ["train"] * 4 + ["validate", "test"]
        lines.append(f"k{i},caf\u00e9 photo {i},images/{i}.png,{c},{'AB'[i % 3 == 0]},{'FM'[i % 2]},{fold[i % 6]},pt{i // 2}")
    text = "\n".join(lines) + "\n"
    (folder / "records.csv").write_bytes(text.encode("cp1252"))
    (folder / "tables" / "copy.csv").write_bytes(text.encode("cp1252"))  # image paths relative to the folder above


def _through_the_notebook(options: dict) -> "data.MultimodalDataset":
    """The table notebook's cells up to loading, run as papermill runs them: its parameters, then ``DATASET_OPTIONS``
    injected, then the settings check and the load cell."""
    import nbformat

    nb = nbformat.read(REPO / "notebooks" / "embed_model_table.ipynb", as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    upto = next(i for i, c in enumerate(code) if "ex.load_dataset(" in c.source)
    namespace: dict = {}
    for cell in code[:upto + 1]:
        exec(compile(cell.source, "embed_model_table.ipynb", "exec"), namespace)
        if "parameters" in cell.metadata.get("tags", []):
            namespace["DATASET_OPTIONS"] = options
    return namespace["ds"]


def _through_the_cli(options: dict, monkeypatch) -> "data.MultimodalDataset":
    """``python -m utils --dataset table --dataset-options '<options as JSON>'`` up to the loaded dataset (the job
    stops there: what follows is the same for every table)."""
    from utils.experiment import main as job

    class Loaded(Exception):
        pass

    got = {}
    load = job.load_dataset

    def spy(*a, **k):
        got["ds"] = load(*a, **k)
        raise Loaded

    monkeypatch.setattr(job, "load_dataset", spy)
    with pytest.raises(Loaded):
        main(["--dataset", "table", "--dataset-options", json.dumps(options), "--text", "minilm-offline", "--no-report"])
    monkeypatch.setattr(job, "load_dataset", load)
    return got["ds"]


@pytest.mark.parametrize("which", ["readme", "prose"])
def test_every_documented_table_option_works_from_the_api_the_cli_and_the_notebook_alike(tmp_path, monkeypatch, which):
    """Issue 19: "every option the README shows works from the CLI, the notebook and the API alike". The README's
    own load("table", ...) call (parsed from README.md: positive_class, name, encoding, subgroup_columns, ...) and
    the options its prose names (image_base, id_column, split_column, on_missing_image, resplit, fractions, seed,
    group_column, dataset_name) give one dataset through all three. The notebook refused positive_class in
    DATASET_OPTIONS (load_dataset() got multiple values for keyword argument 'positive_class')."""
    folder = tmp_path / "study"
    _study_for_options(folder)
    if which == "readme":
        options = {**_readme_table_options(), "root": str(folder)}
        assert {"positive_class", "name", "encoding", "subgroup_columns"} <= set(options)
    else:
        os.remove(folder / "images" / "7.png")
        options = {"root": str(folder), "file": "tables/copy.csv", "image_base": str(folder), "text_column": "caption",
                   "image_column": "file", "label_column": "diagnosis", "id_column": "key", "split_column": "fold",
                   "on_missing_image": "drop", "dataset_name": "derm-2", "encoding": "cp1252"}
    ways = {"api": data.load("table", **options), "cli": _through_the_cli(options, monkeypatch),
            "notebook": _through_the_notebook(options)}
    if which == "prose":
        resplit = {**{k: v for k, v in options.items() if k != "split_column"}, "resplit": True,
                   "fractions": [0.6, 0.2, 0.2], "seed": 3, "group_column": "patient"}
        ways.update({"api resplit": data.load("table", **resplit), "cli resplit": _through_the_cli(resplit, monkeypatch),
                     "notebook resplit": _through_the_notebook(resplit)})
    cols = ["id", "text", "label", "split"]
    first = ways["api"]
    for way, ds in ways.items():
        assert ds.spec.classes == first.spec.classes and ds.spec.name == first.spec.name, way
        assert ds.spec.extra.get("subgroups") == first.spec.extra.get("subgroups"), way
        assert [Path(ds.spec.root) / p for p in ds.df["image_path"]] == \
            [Path(first.spec.root) / p for p in first.df["image_path"]], way
        if "resplit" not in way:
            assert ds.df[cols].equals(first.df[cols]), way
    if which == "readme":
        assert first.spec.name == "derm-study" and first.spec.classes[1] == "malignant"
        assert first.spec.extra["subgroups"] == ["site", "sex"] and first.df["text"].iloc[0] == "caf\u00e9 photo 0"
    else:
        assert len(first) == 29 and "k7" not in set(first.df["id"]) and first.spec.name == "derm-2"
        assert (first.df.set_index("id").loc[["k0", "k4", "k5"], "split"] == ["train", "val", "test"]).all()
        made = ways["api resplit"].df
        assert made.groupby("split").size().to_dict() != first.df.groupby("split").size().to_dict()
        assert (made.assign(p=[f"pt{int(i[1:]) // 2}" for i in made["id"]]).groupby("p")["split"].nunique() == 1).all()
        for way in ("cli resplit", "notebook resplit"):
            assert ways[way].df[cols].equals(made[cols]), way


def test_vectors_passed_without_their_ids_are_refused_not_used_by_position():
    """Issue 19: Embeddings(vectors=...) were used by position (rows in reversed order trained to macro-F1 0.15
    without a word). Vectors now need their ids (the reversed-order, missing-id and row-count cases:
    tests/test_predict.py::test_embeddings_are_aligned_by_id_not_position)."""
    from utils.embed import Embeddings

    with pytest.raises(TypeError, match=r"need the ids of their rows.*never matched by position"):
        Embeddings({"text": np.zeros((3, 4), np.float32)})
    with pytest.raises(ValueError, match=r"id 'a' appears 2 times"):
        Embeddings({"text": np.zeros((3, 4), np.float32)}, ids=["a", "a", "b"])


def test_in_a_notebook_info_goes_to_stdout_warnings_to_stderr_and_bars_are_plain_text(capsys, monkeypatch):
    """Issue 19: INFO lines showed on stderr (red in Jupyter, as errors), tqdm warned 'IProgress not found' and
    papermill kept a widget bar's first state ('0%'). In a notebook: INFO on stdout, warnings on stderr, the
    package's bars plain text on stdout."""
    import logging
    import warnings

    from tqdm.std import tqdm as text_bar

    from utils import runtime
    from utils.experiment import setup_logging

    logger = logging.getLogger("utils")
    before = (logger.level, list(logger.handlers))
    try:
        setup_logging("INFO", notebook=True)
        logging.getLogger("utils.embed").info("reusing cached vectors")
        logging.getLogger("utils.embed").warning("a class has no training rows")
        out, err = capsys.readouterr()
        assert re.search(r"^INFO \w+: reusing cached vectors$", out, re.M) and "reusing" not in err
        assert "WARNING utils.embed: a class has no training rows" in err and "no training rows" not in out
        with warnings.catch_warnings(record=True) as seen:
            warnings.warn("IProgress not found. Please update jupyter and ipywidgets.", UserWarning)
            warnings.warn("another warning", UserWarning)
        assert [str(w.message) for w in seen] == ["another warning"]  # tqdm.auto's fallback warning is silenced
    finally:
        logger.setLevel(before[0])
        for h in list(logger.handlers):
            if h not in before[1]:
                logger.removeHandler(h)
    monkeypatch.setattr(runtime, "in_notebook", lambda: True)
    bar = runtime.progress_bar(range(3), total=3, desc="embed")
    assert type(bar) is text_bar and bar.fp is not None
    list(bar)
    bar.close()
    out = capsys.readouterr().out
    assert out.rstrip().splitlines()[-1].lstrip("\r").startswith("embed: 100%")  # the final state, on stdout
