"""Reading messy files: line numbers, the load report, the ``table`` loader's options, subgroup columns."""

from __future__ import annotations

import gzip
import json
import logging

import numpy as np
import pandas as pd
import pytest

from utils import data
from utils.data import DatasetError
from utils.data._common import read_table
from utils.data.quirks import LoadReport
from utils.io import dumps

from . import fixtures_data as fd


# --------------------------------------------------------------------------------------------- read_table


def test_read_table_index_is_the_file_line_even_with_quoted_newlines_and_bad_lines(tmp_path):
    p = tmp_path / "t.csv"
    p.write_text('a,b,c\n1,2,3\n\n4,5,6,7\n"x\ny",8,9\n10,11\n12,13,14,15\n16,17,18\n')
    rep = LoadReport("t", root=str(tmp_path))
    df = read_table(p, "t", report=rep)
    assert list(df.index) == [2, 5, 7, 9] and df.loc[5, "a"] == "x\ny"
    assert rep.where("skipped") == ["t.csv:4", "t.csv:8"] and rep.counts("skipped") == {"wrong number of fields": 2}
    assert rep.where("recovered") == ["t.csv:3"]
    assert df["b"].dtype.kind == "i"  # the blank line does not turn integer columns into floats
    with pytest.raises(DatasetError, match=r"could not parse .*t\.csv"):  # without a report a bad line is an error
        read_table(p, "t")


def test_read_table_gz_tsv_header_whitespace_and_line_numbers(tmp_path):
    p = tmp_path / "t.tsv.gz"
    with gzip.open(p, "wt") as f:
        f.write(" id \tlabel\nx\t1\n\n  \ny\t0\n")
    rep = LoadReport("t", root=str(tmp_path))
    df = read_table(p, "t", report=rep)
    assert list(df.columns) == ["id", "label"] and list(df.index) == [2, 5]
    assert rep.counts("recovered") == {"stray whitespace in a column name": 1, "blank line": 2}


def test_read_table_names_the_line_and_byte_of_an_encoding_error(tmp_path):
    p = tmp_path / "latin.csv"
    p.write_bytes("text,label\nok,a\nN\xe3o,b\n".encode("latin-1"))
    with pytest.raises(DatasetError, match=r"not valid utf-8 text \(line 3: byte b'\\xe3' is not utf-8\)\. Try this"):
        read_table(p, "t", hint="Try this.")
    assert read_table(p, "t", encoding="latin-1").loc[3, "text"] == "Não"


# ---------------------------------------------------------------------------------------------- LoadReport


def test_load_report_counts_lines_once_and_a_skip_overrides_a_fix():
    rep = LoadReport("d", root="/data/d")
    rep.recovered("/data/d/a.txt", 3, "stray whitespace", " x")
    rep.recovered("/data/d/a.txt", 3, "inconsistent case", "X")
    rep.recovered("/data/d/a.txt", 5, "blank line")
    rep.skipped("/data/d/a.txt", 5, "unknown label", "zz")  # line 5 is skipped after all
    rep.skipped("/data/d/a.txt", 5, "another reason")  # the first reason stays
    rep.skipped("/data/d/img/x.tiff", 0, "unreadable TIFF")
    assert (rep.n_recovered, rep.n_skipped) == (1, 2)
    assert rep.counts("recovered") == {"stray whitespace": 1, "inconsistent case": 1}
    assert rep.where("skipped") == ["a.txt:5", "img/x.tiff"]
    assert "skipped 1: unknown label (a.txt:5)" in str(rep)
    assert json.loads(dumps(rep.to_dict()))["skipped_by_reason"] == {"unknown label": 1, "unreadable TIFF": 1}
    assert list(rep.table()["lines"]) == [1, 1, 1, 1]
    rep.strict = True
    with pytest.raises(DatasetError, match=r"(?s)strict=True and 2 record\(s\).*a\.txt:5: unknown label: 'zz'.*img/x\.tiff: unreadable"):
        rep.finish(10)


def test_load_report_refuses_an_empty_result_and_logs(caplog):
    rep = LoadReport("d")
    rep.skipped("f.csv", 2, "missing label")
    with pytest.raises(DatasetError, match=r"(?s)d: no usable rows.*missing label"):
        rep.finish(0)
    with caplog.at_level(logging.WARNING, logger="utils.data"):
        rep.finish(3)
    assert "d: recovered 0 line(s), skipped 1 record(s)" in caplog.text and rep.rows == 3


def test_every_loader_takes_strict(tmp_path):
    import inspect

    data.names()
    for name in data.names():
        assert "strict" in inspect.signature(data.DATASETS.get(name)).parameters or name == "synthetic", name


# ------------------------------------------------------------------------------------------- the table loader


def _two_class_table(folder, encoding="utf-8", text="a cat"):
    folder.mkdir(parents=True, exist_ok=True)
    rows = ["text,image,label"] + [f"{text} {i},img{i}.png,{['benign', 'malignant'][i % 2]}" for i in range(20)]
    (folder / "records.csv").write_bytes(("\n".join(rows) + "\n").encode(encoding))
    return folder


def test_table_name_option_and_distinct_default_keys(tmp_path):
    """Two different records.csv files never share a cache key; dataset_name= names it (issue 12)."""
    a = data.load("table", root=_two_class_table(tmp_path / "a"), on_missing_image="ignore")
    b = data.load("table", root=_two_class_table(tmp_path / "b"), on_missing_image="ignore")
    assert a.spec.key != b.spec.key and a.spec.key.startswith("table-records-")
    assert a.spec.key == data.load("table", root=tmp_path / "a", on_missing_image="ignore").spec.key  # stable
    named = data.load("table", root=tmp_path / "a", dataset_name="derm-study", on_missing_image="ignore")
    assert named.spec.key == "derm-study"
    # the documented name= option reaches the loader (it used to raise TypeError: load() took it as its own)
    assert data.load("table", root=tmp_path / "a", name="derm-study", on_missing_image="ignore").spec.key == "derm-study"
    with pytest.raises(data.DatasetError, match="disagree"):
        data.load("table", root=tmp_path / "a", name="x", dataset_name="y")
    with pytest.raises(data.DatasetError, match=r"'text_colum' \(did you mean 'text_column'\?\)"):
        data.load("table", root=tmp_path / "a", text_colum="text")


def test_table_encoding_option_and_its_hint(tmp_path):
    """A latin-1 CSV: the error names the line and says to pass encoding=; with it the text reads right."""
    root = _two_class_table(tmp_path / "l", encoding="latin-1", text="lésion")
    with pytest.raises(DatasetError, match=r"(?s)records\.csv is not valid utf-8 text \(line 2.*encoding='cp1252'.*encoding='latin-1'"):
        data.load("table", root=root, on_missing_image="ignore")
    ds = data.load("table", root=root, encoding="latin-1", on_missing_image="ignore")
    assert ds.df["text"][0] == "lésion 0"


def test_table_positive_class_is_explicit_and_logged(tmp_path, caplog):
    root = _two_class_table(tmp_path / "p")
    with caplog.at_level(logging.INFO, logger="utils.data"):
        default = data.load("table", root=root, on_missing_image="ignore")
    assert default.spec.classes == ["benign", "malignant"] and "positive class 'malignant'" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="utils.data"):
        flipped = data.load("table", root=root, positive_class="benign", on_missing_image="ignore")
    assert flipped.spec.classes == ["malignant", "benign"] and "positive class 'benign'" in caplog.text
    y = flipped.labels()
    assert (y == (flipped.df["label"] == "benign").to_numpy()).all()
    ordered = data.load("table", root=root, classes=["malignant", "benign"], on_missing_image="ignore")
    assert ordered.spec.classes[1] == "benign"  # classes= orders them too
    with pytest.raises(DatasetError, match="positive_class='cancer' is not a class"):
        data.load("table", root=root, positive_class="cancer", on_missing_image="ignore")


def test_table_subgroup_columns_are_kept_and_listed(tmp_path):
    fx = fd.build("table", tmp_path / "t")
    df = pd.read_csv(fx.root / "records.csv")
    df["site"] = ["A", "B"] * (len(df) // 2) + ["A"] * (len(df) % 2)
    df.to_csv(fx.root / "records.csv", index=False)
    ds = data.load("table", root=fx.root, **fx.options, subgroup_columns=["site"])
    assert ds.spec.extra["subgroups"] == ["site"] and set(ds.df["site"]) == {"A", "B"}
    with pytest.raises(DatasetError, match="would overwrite"):
        data.load("table", root=fx.root, **fx.options, subgroup_columns=["split"])


# ------------------------------------------------------------------------------------------ subgroup columns


@pytest.mark.parametrize("name,columns", [("brset", ["sex", "age", "camera"]), ("ham10000", ["sex", "age", "localization"]),
                                          ("mimic_cxr", ["view"])])
def test_medical_loaders_keep_subgroup_columns(name, columns, tmp_path):
    """Issue 14's subgroup report reads these plain columns; the loader lists them in spec.extra."""
    fx = fd.build(name, tmp_path / name)
    ds = data.load(name, root=fx.root, **fx.options)
    assert ds.spec.extra["subgroups"] == columns
    exp = fx.expected.set_index("id").loc[ds.df["id"]]
    for c in columns:
        got = ds.df[c].to_numpy(dtype=object)
        want = exp[c].to_numpy(dtype=object)
        same = [(g == w) or (pd.isna(g) and pd.isna(w)) for g, w in zip(got, want)]
        assert all(same), (c, got, want)
    if "age" in columns:
        assert ds.df["age"].dtype.kind == "f" and np.isnan(ds.df["age"]).sum() == exp["age"].isna().sum()
    data.validate(ds.df, ds.spec)  # extra columns keep the table contract


# ------------------------------------------------------------------------------------ loader-specific rules


def test_coco_qa_blank_answer_in_step_is_skipped_not_realigned(tmp_path):
    """Files with equally many lines stay paired by position: a blank answer skips only its record."""
    fx = fd.build("coco_qa", tmp_path / "c")
    p = fx.root / "train" / "questions.txt"
    lines = p.read_text().splitlines()
    lines[2] = ""  # train question 3 is blank, the other three files still have their line 3
    p.write_text("\n".join(lines) + "\n")
    ds = data.load("coco_qa", root=fx.root)
    rep = ds.spec.extra["load_report"]
    assert rep.where("skipped", "blank line where the other files have one") == ["train/questions.txt:3"]
    got = ds.df.set_index("id")
    assert "train000002" not in got.index and got.loc["train000003", "label"] == "cat"  # still in step


def test_fakeddit_post_in_two_split_files_is_skipped_from_both(tmp_path):
    fx = fd.build("fakeddit", tmp_path / "f")
    val, test = fx.root / "multimodal_validate.tsv", fx.root / "multimodal_test_public.tsv"
    test.write_text(test.read_text() + val.read_text().splitlines()[1] + "\n")  # val's first post, again in test
    ds = data.load("fakeddit", root=fx.root)
    rep = ds.spec.extra["load_report"]
    assert sorted(rep.where("skipped", "one post id in two splits")) == \
        ["multimodal_test_public.tsv:10", "multimodal_validate.tsv:2"]
    assert "va000x" not in set(ds.df["id"])


def test_table_reads_parquet_and_names_rows_from_one(tmp_path):
    pd.DataFrame({"text": ["a", "b", "c", "d"], "label": ["x", None, "y", "x"]}).to_parquet(tmp_path / "t.parquet")
    ds = data.load("table", root=tmp_path, file="t.parquet", image_column=None)
    assert ds.spec.extra["load_report"].where("skipped") == ["t.parquet:2"] and len(ds) == 3


# ------------------------------------------------------------------------------- valid but doubtful (noted)


def test_doubtful_rows_are_loaded_as_written_but_noted_with_their_lines(tmp_path, caplog):
    """Ids that differ only by case, a label that reads like a missing value, a one-row class that is a typo
    of another and a class with no training rows: each loads as written and is noted (file:line, why) in the
    load report, which is logged as a warning; strict=True does not refuse them (they parse)."""
    rows = ["record_id,text,label,split"]
    for i in range(24):
        rows.append(f"P{i},note {i},{['benign', 'malignant'][i % 2]},{['train', 'train', 'val', 'test'][i % 4]}")
    rows += ["p3,note again,benign,train",  # line 26: P3 and p3
             "P30,note,NaN,train",  # line 27: a label that reads like a missing value
             "P31,note,malignnant,train",  # line 28: a typo of malignant
             "P32,note,rare,test", "P33,note,rare,test"]  # lines 29-30: a class seen only in test
    (tmp_path / "records.csv").write_text("\n".join(rows) + "\n")
    with caplog.at_level(logging.WARNING, logger="utils.data"):
        ds = data.load("table", root=tmp_path, id_column="record_id", image_column=None, strict=True)
    assert len(ds) == 29 and {"P3", "p3"} <= set(ds.df["id"]) and "NaN" in ds.spec.classes
    rep = ds.spec.extra["load_report"]
    counts = rep.counts("noted")
    case = next(r for r in counts if r.startswith("id differs from another only by case"))
    assert counts[case] == 2 and rep.where("noted", case) == ["records.csv:5", "records.csv:26"]
    missing = next(r for r in counts if r.startswith("label reads like a missing value"))
    assert rep.where("noted", missing) == ["records.csv:27"]
    assert rep.where("noted", "class 'malignnant' has a single row (a typo of 'malignant'?)") == ["records.csv:28"]
    assert any(r.startswith("class 'rare' has no training rows (2 test)") for r in counts)
    assert rep.n_skipped == 0 and "noted 6 to check" in rep.headline()
    assert "noted 6 to check" in caplog.text and "malignnant" in caplog.text
    assert rep.to_dict()["noted"] == 6


def test_a_clean_table_notes_nothing(tmp_path):
    ds = data.load("table", root=_two_class_table(tmp_path / "c"), on_missing_image="ignore")
    assert ds.spec.extra["load_report"].n_noted == 0


@pytest.mark.parametrize("content", ["text,image,label\n", "", "\n\n"])
def test_a_table_with_no_records_is_a_clear_error(tmp_path, content):
    (tmp_path / "records.csv").write_text(content)
    with pytest.raises(DatasetError, match=r"records\.csv (has no records|is empty)"):
        data.load("table", root=tmp_path)


# ------------------------------------------------------------------------ release variants (DATASETS.md)
def _drop_ham_dataset_column(root):
    import csv
    import io

    path = root / "HAM10000_metadata.csv"
    rows = list(csv.reader(io.StringIO(path.read_text())))
    assert "dataset" in rows[0]
    k = rows[0].index("dataset")
    out = io.StringIO()
    csv.writer(out, lineterminator="\n").writerows([c for j, c in enumerate(r) if j != k] if r else r for r in rows)
    path.write_text(out.getvalue())


def _drop_fakeddit_index(root):
    for f in root.glob("multimodal_*.tsv"):
        lines = f.read_text().split("\n")
        assert lines[0].startswith("\t")  # the published files start with an unnamed index column
        f.write_text("\n".join(line.split("\t", 1)[1] if "\t" in line else line for line in lines))


def _musti_as_jsonl(root):
    df = pd.read_csv(root / "pairs.csv", dtype=str, keep_default_na=False)
    (root / "pairs.csv").unlink()
    (root / "pairs.jsonl").write_text("".join(json.dumps(r) + "\n" for r in df.to_dict("records")))


def _mimic_decompressed(root):
    for f in root.glob("*.csv.gz"):
        (root / f.name[:-3]).write_bytes(gzip.decompress(f.read_bytes()))
        f.unlink()


def _coco_2017_names(root):
    import re

    renamed = 0
    for f in list((root / "images").rglob("COCO_*.jpg")):
        f.rename(f.with_name(re.search(r"_(\d{12})\.jpg$", f.name).group(1) + ".jpg"))
        renamed += 1
    assert renamed


@pytest.mark.parametrize("name,variant", [
    ("ham10000", _drop_ham_dataset_column),  # "some releases add `dataset`": the ones without it
    ("fakeddit", _drop_fakeddit_index),  # "first column may be an unnamed index": files without it
    ("musti", _musti_as_jsonl),  # "exact layout unverified: a CSV / JSON of pairs"
    ("mimic_cxr", _mimic_decompressed),  # the .csv.gz files unpacked by the user
    ("coco_qa", _coco_2017_names),  # MS-COCO 2017 names its images %012d.jpg, 2014 COCO_<split>2014_%012d.jpg
])
def test_each_release_variant_in_datasets_md_loads_the_same_rows(name, variant, tmp_path):
    """The other layouts a dataset is published or kept in (shared/DATASETS.md) give the same records."""
    fx = fd.build(name, tmp_path / name)

    def rows():
        ds = data.load(name, root=fx.root, **fx.options)
        return ds.df[["id", "text", "label", "split"]].astype(str).sort_values("id").reset_index(drop=True)

    before = rows()
    variant(fx.root)
    after = rows()
    assert len(after) == len(before) > 0
    pd.testing.assert_frame_equal(after, before)
