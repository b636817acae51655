"""Fixture folders that copy each dataset's raw layout (shared/DATASETS.md) with a handful of records.

``build(name, folder)`` writes the files (tiny generated images, WAVs, TIFFs) and returns a
:class:`Fixture`: the loader options to use and the expected table (``id, text, image_path, label,
split``), written down independently of the loaders (clean values chosen here, then written messy).
``split`` is the official split; ``"train"`` rows of datasets without a val split may become ``val``.
Used by tests/test_datasets.py and by the notebook CI rules (tests/notebook_params.py).
"""

from __future__ import annotations

import gzip
import io
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, List

import numpy as np
import pandas as pd


@dataclass
class Fixture:
    """``expected``: the table loading must give (skipped records absent, recovered ones fixed);
    ``recovered`` / ``skipped``: how many lines the load report must count; ``skipped_at``: the
    ``file:line`` of every skipped record (just ``file`` for a whole file, such as an unreadable image)."""

    root: Path
    expected: pd.DataFrame
    options: Dict[str, Any] = field(default_factory=dict)
    recovered: int = 0
    skipped: int = 0
    skipped_at: List[str] = field(default_factory=list)


class Lines:
    """A text file written line by line, remembering line numbers (1-based) of the lines that matter."""

    def __init__(self) -> None:
        self.lines: List[str] = []

    def add(self, *lines: str) -> int:
        """Append ``lines``; the number of the first one."""
        self.lines.extend(lines)
        return len(self.lines) - len(lines) + 1

    def write(self, path: Path) -> None:
        _write(path, "\n".join(self.lines) + "\n")


def _image(path: Path, seed: int, size: int = 16) -> None:
    from PIL import Image

    rng = np.random.default_rng(seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    arr = rng.integers(0, 255, (size, size, 3), dtype=np.uint8)
    Image.fromarray(arr).save(path, **({"quality": 80} if path.suffix == ".jpg" else {}))


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")


# ----------------------------------------------------------------------------------------- daquar


def build_daquar(root: Path) -> Fixture:
    """Quirks: a blank line, trailing spaces, ``Image2``, ``th eimage3`` (the real train file's typo), an
    upper-case answer (recovered); a question
    naming no image, a question without its answer, an answer without a question (skipped)."""
    answers = ["chair", "table", "lamp", "book, lamp", "chair, table"]
    rows, skipped_at = [], []
    recovered = 0
    for split, imgs, n in (("train", range(1, 7), 24), ("test", range(7, 10), 9)):
        f = Lines()
        fname = f"qa.894.raw.{split}.txt"
        k = 0  # question ordinal: the loader's id counts skipped questions too
        for i in range(n):
            img = list(imgs)[i % len(imgs)]
            ans = answers[(i + img) % len(answers)]
            q_clean = ["what is beside the bed?", "what is on the floor?", "what is near the window?"][i % 3]
            q = q_clean[:-1] + f" in the image{img} ?"
            a = ans
            if split == "train" and i == 3:
                f.add("")  # a blank line between two records
                recovered += 1
            if split == "train" and i == 5:
                q += "   "  # trailing spaces
                recovered += 1
            if split == "train" and i == 8:
                q = q.replace(f"image{img}", f"Image{img}")
                recovered += 1
            if split == "train" and i == 11:
                a = ans.capitalize()  # "Chair" for "chair"
                recovered += 1
            if split == "train" and i == 16:  # the real training file's "in th eimage999 ?": the number is certain
                q = q.replace(f"in the image{img}", f"in th eimage{img}")
                recovered += 1
            if split == "train" and i == 14:
                skipped_at.append(f"{fname}:{f.add('what is hanging on the wall ?', 'picture')}")  # names no image
                k += 1
            if split == "train" and i == 18:
                skipped_at.append(f"{fname}:{f.add('how many pillows are on the bed in the image2 ?')}")  # its answer is lost
                k += 1
            f.add(q, a)
            rows.append({"id": f"{split}{k:05d}", "text": q_clean, "image_path": f"nyu_depth_images/image{img}.png",
                         "label": [x.strip() for x in ans.split(",")], "split": split})
            k += 1
        if split == "test":
            skipped_at.append(f"{fname}:{f.add('sofa')}")  # a stray answer at the end
            f.add("")  # and a blank line after it
            recovered += 1
        f.write(root / fname)
    for img in range(1, 10):
        _image(root / "nyu_depth_images" / f"image{img}.png", img)
    return Fixture(root, pd.DataFrame(rows), recovered=recovered, skipped=len(skipped_at), skipped_at=skipped_at)


# ---------------------------------------------------------------------------------------- coco_qa


def build_coco_qa(root: Path) -> Fixture:
    """Quirks: ``Cat`` and `` two`` answers, an image id ``1003.0``, a trailing blank line, a blank line that
    puts test/answers.txt out of step (recovered); an image id ``1004x`` and a type ``7`` (skipped)."""
    answers, qs = ["cat", "two", "red"], ["what is on the sofa", "how many dogs are there", "what color is the bus"]
    rows, skipped_at = [], []
    recovered = 0
    for split, n, base in (("train", 24, 1000), ("test", 9, 5000)):
        q, a, ids, types = [], [], [], []
        for i in range(n):
            c = i % 3
            img = base + (i // 2 if split == "train" else i)
            q.append(qs[c]); a.append(answers[c]); ids.append(str(img)); types.append(str(c))
            if split == "train" and i in (3, 4, 6):
                a[-1] = {3: "Cat", 4: " two"}.get(i, a[-1])
                ids[-1] = f"{img}.0" if i == 6 else ids[-1]
                recovered += 1
            if split == "train" and i == 9:
                ids[-1] = f"{img}x"
                skipped_at.append(f"{split}/img_ids.txt:{i + 1}")
            if split == "train" and i == 12:
                types[-1] = "7"
                skipped_at.append(f"{split}/types.txt:{i + 1}")
            if split == "train":
                rel = f"images/train2014/COCO_train2014_{img:012d}.jpg"
            elif i % 2:
                rel = f"images/val2017/{img:012d}.jpg"  # the 2017 naming
            else:
                rel = f"images/val2014/COCO_val2014_{img:012d}.jpg"
            if not (root / rel).exists():
                _image(root / rel, img)
            if not (split == "train" and i in (9, 12)):
                rows.append({"id": f"{split}{i:06d}", "text": qs[c], "image_path": rel, "label": answers[c], "split": split})
        if split == "train":
            q.append("")  # a blank line at the end of questions.txt
            recovered += 1
        else:
            a.insert(5, "")  # a blank line inside test/answers.txt only
            recovered += 1
        for name, vals in (("questions", q), ("answers", a), ("img_ids", ids), ("types", types)):
            _write(root / split / f"{name}.txt", "\n".join(vals) + "\n")
    return Fixture(root, pd.DataFrame(rows), recovered=recovered, skipped=len(skipped_at), skipped_at=skipped_at)


# --------------------------------------------------------------------------------------- fakeddit


def _tsv_lines(df: pd.DataFrame, index: bool) -> List[str]:
    buf = io.StringIO()
    df.to_csv(buf, sep="\t", index=index)
    return buf.getvalue().splitlines()


def build_fakeddit(root: Path, layout: str = "official") -> Fixture:
    """Quirks (official): a blank line, an exact duplicate line, an id with a trailing space (recovered); a
    2-way label ``7``, a title holding a tab, a line cut short (skipped). Simple layout: a blank line and a
    Windows path (recovered); a missing image path (skipped)."""
    rows, skipped_at = [], []
    recovered = 0
    titles = ["dog finds home", "moon made of cheese", "city council votes", "man bites dog", "new bridge opens"]
    for split, fname, n in (("train", "multimodal_train.tsv", 16), ("val", "multimodal_validate.tsv", 8),
                            ("test", "multimodal_test_public.tsv", 8)):
        recs = []
        for i in range(n):
            pid = f"{split[:2]}{i:03d}x"
            six = i % 6
            two = 0 if six == 0 else 1
            three = 0 if six == 0 else 1 + (six % 2)
            title = f"{titles[i % 5]} {i}"
            recs.append({"author": "u", "clean_title": title, "created_utc": 1.5e9 + i, "domain": "x.com",
                         "hasImage": True, "id": pid, "image_url": f"http://i/{pid}.jpg", "linked_submission_id": "",
                         "num_comments": i, "score": i, "subreddit": "news", "title": title.upper(),
                         "upvote_ratio": 0.9, "2_way_label": two, "3_way_label": three, "6_way_label": six})
            img = f"images/{pid}.jpg" if layout == "official" else f"imgs/{split}/{pid}.jpg"
            _image(root / img, i)
            rows.append({"id": pid if layout == "official" else f"{split}{i:07d}", "text": title, "image_path": img,
                         "label": str(two), "split": split, "3_way": str(three), "6_way": str(six)})
        df = pd.DataFrame(recs)
        out_name = fname if layout == "official" else {"train": "train.tsv", "val": "val.tsv", "test": "test.tsv"}[split]
        if layout == "official":
            lines = _tsv_lines(df, index=True)  # the published files start with an unnamed index column
            if split == "train":
                lines[4] = lines[4].replace("\t1\t", "\t7\t", 1)  # 2_way_label of row 3 (id tr003x): 7
                skipped_at.append(f"{out_name}:5")
                rows = [r for r in rows if r["id"] != "tr003x"]
                lines.insert(7, "")  # blank line 8
                lines.insert(10, lines[9])  # line 10 (row 7) written twice: line 11 is an exact copy
                recovered += 2
            if split == "val":
                lines[3] = lines[3].replace("city council", "city\tcouncil")  # a tab inside the title of row 2
                skipped_at.append(f"{out_name}:4")
                rows = [r for r in rows if r["id"] != "va002x"]
            if split == "test":
                lines[5] = "\t".join(lines[5].split("\t")[:3])  # row 4 cut short after its author
                skipped_at.append(f"{out_name}:6")
                rows = [r for r in rows if r["id"] != "te004x"]
                lines[7] = lines[7].replace("\tte006x\t", "\tte006x \t")  # trailing space in an id
                recovered += 1
        else:
            simple = pd.DataFrame({"clean_title": df["clean_title"], "2_way_label": df["2_way_label"],
                                   "local_image_path": [f"imgs/{split}/{p}.jpg" for p in df["id"]]})
            lines = _tsv_lines(simple, index=False)
            if split == "train":
                lines[3] = lines[3].replace("imgs/train/", "imgs\\train\\")  # a path written on Windows
                lines.insert(6, "")  # blank line 7
                recovered += 2
            if split == "test":
                lines[2] = lines[2].rsplit("\t", 1)[0] + "\t"  # row 1 has no image path
                skipped_at.append(f"{out_name}:3")
                rows = [r for r in rows if r["id"] != "test0000001"]
        _write(root / out_name, "\n".join(lines) + "\n")
    return Fixture(root, pd.DataFrame(rows), recovered=recovered, skipped=len(skipped_at), skipped_at=skipped_at)


def build_fakeddit_simple(root: Path) -> Fixture:
    return build_fakeddit(root, layout="simple")


def build_fakeddit_seed(root: Path) -> Fixture:
    """The files of the original BERT + CLIP classifier: ``{train,val,test}_filtered.tsv`` (pandas index column,
    ``id``, ``clean_title`` or ``title``, ``2_way_label``, ``local_image_path``) in ``<Drive>/fakeddit_data``,
    the image paths relative to the Drive root. Quirks: a label `` 0``, a path with a trailing space
    (recovered); a label ``2`` (skipped)."""
    drive, data = root, root / "fakeddit_data"
    rows, skipped_at = [], []
    recovered = 0
    for split, n in (("train", 12), ("val", 6), ("test", 6)):
        recs = []
        for i in range(n):
            pid = f"s{split[:2]}{i:02d}"
            two = int(i % 3 == 0)
            img = f"fakeddit_images/{pid}.jpg"
            _image(drive / img, i)
            title = f"post {i} of {split}"
            recs.append({"id": pid, "title" if split == "val" else "clean_title": title, "2_way_label": two,
                         "local_image_path": img})
            rows.append({"id": pid, "text": title, "image_path": img, "label": str(two), "split": split})
        lines = _tsv_lines(pd.DataFrame(recs), index=True)
        fname = f"{split}_filtered.tsv"
        if split == "train":
            lines[2] = lines[2].replace("\t0\t", "\t 0\t")
            recovered += 1
        if split == "val":
            lines[3] = lines[3] + " "
            recovered += 1
        if split == "test":
            lines[4] = lines[4].replace("\t1\t", "\t2\t")  # row 3
            skipped_at.append(f"{fname}:5")
            rows = [r for r in rows if r["id"] != "ste03"]
        _write(data / fname, "\n".join(lines) + "\n")
    return Fixture(data, pd.DataFrame(rows), recovered=recovered, skipped=len(skipped_at), skipped_at=skipped_at)


# -------------------------------------------------------------------------------------- recipes5k


def build_recipes5k(root: Path) -> Fixture:
    """Quirks: a class written ``Onion_Rings``, an index `` 4``, a blank line inside test_images.txt only, a
    trailing blank line in test_labels.txt (recovered); an index ``x`` and a class ``pizza`` (skipped)."""
    classes = ["apple_pie", "onion_rings", "sushi"]
    ingredients = [["flour", "apple", "sugar"], ["onion", "flour", "oil"], ["rice", "salmon", "nori"],
                   ["flour", "green apple", "butter"], ["onion", "beer", "egg"], ["rice", "tuna", "seaweed"]]
    simplified = [["flour", "apple", "sugar"], ["onion", "flour", "oil"], ["rice", "fish", "nori"],
                  ["flour", "apple", "butter"], ["onion", "beer", "egg"], ["rice", "fish", "seaweed"]]
    _write(root / "annotations/classes_Recipes5k.txt", "\n".join(classes) + "\n")
    _write(root / "annotations/ingredients_Recipes5k.txt", "\n".join(",".join(x) for x in ingredients) + "\n")
    _write(root / "annotations/ingredients_simplified_Recipes5k.txt", "\n".join(",".join(x) for x in simplified) + "\n")
    rows, skipped_at = [], []
    recovered = 0
    for split, n in (("train", 15), ("val", 6), ("test", 6)):
        imgs, labs = [], []
        for i in range(n):
            c = i % 3
            recipe = c + 3 * (i % 2)
            img = f"{classes[c]}/{i}_{split}_{classes[c]}_hostedLargeUrl.jpg"
            _image(root / "images" / img, i)
            imgs.append(img); labs.append(str(recipe))
            if split == "train" and i == 4:
                imgs[-1] = img.replace("onion_rings/", "Onion_Rings/", 1)
                recovered += 1
            if split == "train" and i == 7:
                labs[-1] = f" {recipe}"
                recovered += 1
            if split == "train" and i == 9:
                labs[-1] = "x"
                skipped_at.append(f"annotations/train_labels.txt:{i + 1}")
                continue
            if split == "val" and i == 1:
                imgs[-1] = f"pizza/{i}_val_pizza.jpg"
                skipped_at.append(f"annotations/val_images.txt:{i + 1}")
                continue
            rows.append({"id": f"{split}{i:05d}", "text": "Ingredients: " + ", ".join(ingredients[recipe]) + ".",
                         "image_path": f"images/{img}", "label": classes[c], "split": split,
                         "text_simplified": "Ingredients: " + ", ".join(simplified[recipe]) + "."})
        if split == "test":
            imgs.insert(3, "")  # only the images file: the two files are out of step by this line
            labs.append("")
            recovered += 2
        _write(root / f"annotations/{split}_images.txt", "\n".join(imgs) + "\n")
        _write(root / f"annotations/{split}_labels.txt", "\n".join(labs) + "\n")
    return Fixture(root, pd.DataFrame(rows), recovered=recovered, skipped=len(skipped_at), skipped_at=skipped_at)


# ------------------------------------------------------------------------------------------ brset


def build_brset(root: Path) -> Fixture:
    """Ages and diabetes times are chosen clean, then written the way the real file has them (``5O``,
    ``57,5``: recovered and counted). More quirks: an image_id with a trailing space, a blank line, an
    exact duplicate line (recovered); a grade ``9`` and a row without patient_id (skipped)."""
    recs, rows = [], []
    ages = [(50.0, "5O"), (57.5, "57,5"), (0.0, "O"), (63.0, "63"), (71.0, "71,0"), (45.0, "45")]
    dtime = [(10.0, "1O"), (None, "Não"), (2.5, "2,5"), (None, ""), (7.0, "7"), (None, "não")]
    bad_numbers = {"5O", "57,5", "O", "71,0", "1O", "2,5"}
    n_pat = 12
    k = 0
    recovered, skipped_at = 0, []
    for p in range(n_pat):
        for e in range(2 if p % 3 else 3):
            grade = [0, 0, 2, 4, 1, 0][(p + e) % 6] if p % 2 else [0, 3, 0, 0, 4, 2][(p + e) % 6]
            age, age_raw = ages[p % 6]
            dt, dt_raw = dtime[(p + e) % 6]
            sex, eye = 1 + p % 2, 1 + e % 2
            img = f"img{k:05d}"
            hem = 1 if grade >= 2 else 0
            recs.append({"image_id": img, "patient_id": str(100 + p), "camera": "Canon CR", "patient_age": age_raw,
                         "comorbidities": "SAH" if p % 4 == 0 else "0", "diabetes_time_y": dt_raw,
                         "insuline": "yes" if p % 3 == 0 else "no", "patient_sex": sex, "exam_eye": eye,
                         "diabetes": "yes" if p % 2 else "no", "nationality": "Brazil", "optic_disc": "normal",
                         "vessels": 1, "macula": 1, "DR_SDRG": grade, "DR_ICDR": grade, "focus": 1, "iluminaton": 1,
                         "image_field": 1, "artifacts": 1, "diabetic_retinopathy": int(grade > 0), "macular_edema": 0,
                         "scar": 0, "nevus": 0, "amd": 0, "vascular_occlusion": 0, "hypertensive_retinopathy": 0,
                         "drusens": 0, "hemorrhage": hem, "retinal_detachment": 0, "myopic_fundus": 0,
                         "increased_cup_disc": 0, "other": 0})
            _image(root / "fundus_photos" / f"{img}.jpg", k)
            k += 1
            if k == 5:
                recs[-1]["DR_ICDR"] = 9
                skipped_at.append(f"labels.csv:{k + 1}")
                continue
            if k == 11:
                recs[-1]["patient_id"] = ""
                skipped_at.append(f"labels.csv:{k + 1}")
                continue
            if k == 8:
                recs[-1]["image_id"] = img + " "
            recovered += age_raw in bad_numbers or dt_raw in bad_numbers or k == 8
            a = "unknown" if age is None else (int(age) if float(age).is_integer() else age)
            d = "unknown" if dt is None else (int(dt) if float(dt).is_integer() else dt)
            text = (f"Fundus photograph of the {'right' if eye == 1 else 'left'} eye of a {a}-year-old "
                    f"{'male' if sex == 1 else 'female'} patient. Nationality: Brazil. Camera: Canon CR. "
                    f"Diabetes: {'yes' if p % 2 else 'no'}. Years since diabetes diagnosis: {d}. "
                    f"Insulin use: {'yes' if p % 3 == 0 else 'no'}. Comorbidities: {'SAH' if p % 4 == 0 else 'unknown'}.")
            rows.append({"id": img, "text": text, "image_path": f"fundus_photos/{img}.jpg",
                         "label": "dr" if grade > 0 else "no_dr", "split": None, "group": str(100 + p),
                         "dr3": "normal" if grade == 0 else "proliferative" if grade == 4 else "non_proliferative",
                         "sex": "male" if sex == 1 else "female", "age": age, "camera": "Canon CR"})
    lines = pd.DataFrame(recs).to_csv(index=False).splitlines()
    lines.insert(15, lines[14])  # line 15 written twice
    lines.insert(20, "")  # and a blank line 21
    recovered += 2
    _write(root / "labels.csv", "\n".join(lines) + "\n")
    return Fixture(root, pd.DataFrame(rows), recovered=recovered, skipped=len(skipped_at), skipped_at=skipped_at)


# --------------------------------------------------------------------------------------- ham10000


def build_ham10000(root: Path) -> Fixture:
    """Quirks: dx ``MEL`` and ``melanoma``, sex ``Female``, an age ``35,0``, a duplicate line (recovered); a dx
    ``keratosis`` and a row without lesion_id (skipped)."""
    dxs = ["nv", "mel", "bkl"]
    dx_types = {"nv": "follow_up", "mel": "histo", "bkl": "consensus"}
    recs, rows = [], []
    recovered, skipped_at = 0, []
    k = 0
    for les in range(18):
        dx = dxs[les % 3]
        for j in range(1 + (les % 2)):
            img = f"ISIC_{k:07d}"
            part = "HAM10000_images_part_1" if k % 2 == 0 else "HAM10000_images_part_2"
            _image(root / part / f"{img}.jpg", k)
            age = None if les == 4 else float(30 + 5 * les)
            sex = "unknown" if les == 5 else ["male", "female"][les % 2]
            loc = ["back", "face", "lower extremity"][les % 3]
            rec = {"lesion_id": f"HAM_{les:07d}", "image_id": img, "dx": dx, "dx_type": dx_types[dx],
                   "age": age, "sex": sex, "localization": loc, "dataset": "vidir_modern"}
            recs.append(rec)
            k += 1
            line = k + 1
            if line in (3, 4, 8, 15):  # rows 1 and 6 are mel, row 2 is 35 years old, row 13 female
                rec.update({3: {"dx": "MEL"}, 4: {"age": "35,0"}, 8: {"dx": "melanoma"}, 15: {"sex": "Female"}}[line])
                recovered += 1
            if line in (7, 20):  # row 5: an unknown dx; row 18: no lesion_id
                rec.update({"dx": "keratosis"} if line == 7 else {"lesion_id": None})
                skipped_at.append(f"HAM10000_metadata.csv:{line}")
                continue
            a = "unknown" if age is None else int(age)
            s = "unknown" if sex == "unknown" else sex
            rows.append({"id": img, "text": f"Dermatoscopic image of a skin lesion on the {loc} of a {a}-year-old {s} patient.",
                         "image_path": f"{part}/{img}.jpg", "label": dx, "split": None, "group": f"HAM_{les:07d}",
                         "dx_type": dx_types[dx], "sex": None if sex == "unknown" else sex, "age": age, "localization": loc})
    lines = pd.DataFrame(recs).to_csv(index=False).splitlines()
    lines.insert(22, lines[21])  # line 22 written twice
    recovered += 1
    _write(root / "HAM10000_metadata.csv", "\n".join(lines) + "\n")
    return Fixture(root, pd.DataFrame(rows), recovered=recovered, skipped=len(skipped_at), skipped_at=skipped_at)


# -------------------------------------------------------------------------------------- satellite


def build_satellite(root: Path) -> Fixture:
    """Ten weekly images for three municipalities; labels: cases above the municipality's median over its
    TRAINING weeks (the first six dates; the time split puts the last two in test, the two before in val).
    Quirks: a code `` 5088``, a code ``76001.0``, an exact duplicate line, a blank line (recovered); cases
    ``n/a`` (skipped with its week), an image named with an impossible date, an image of a week the cases
    file lacks, an unreadable TIFF (skipped). metadata.csv writes Medellin's code ``05001``."""
    import datetime as dt

    import tifffile

    sub = root / "10_municipalities"
    codes = ["5001", "5088", "76001"]
    names = {"5001": ("Medellin", "Antioquia", 2500000), "5088": ("Bello", "Antioquia", 500000), "76001": ("Cali", "Valle", 2200000)}
    start = dt.date(2017, 1, 1)  # a Sunday: epidemiological week 1 of 2017
    rng = np.random.default_rng(0)
    cases_lines, rows = ["Municipality code,Year,Week,Cases"], []
    skipped_at = []
    for m, code in enumerate(codes):
        counts = [(w * 7 + m * 3) % 11 for w in range(10)]
        lost = {1: 2}.get(m)  # 5088's third week: its cases read n/a
        med = float(np.median([counts[w] for w in range(6) if w != lost]))
        for w in range(10):
            d = start + dt.timedelta(days=7 * w + 2)  # images are dated mid-week
            arr = rng.integers(0, 3000, (12, 16, 16), dtype=np.uint16)
            p = sub / "images" / code / f"image_{d.isoformat()}.tiff"
            p.parent.mkdir(parents=True, exist_ok=True)
            tifffile.imwrite(str(p), arr)
            written = {(1, 4): " 5088", (2, 1): "76001.0"}.get((m, w), code)
            cases_lines.append(f"{written},2017,{w + 1},{'n/a' if w == lost else counts[w]}")
            if w == lost:
                continue
            if (m, w) == (2, 7):  # a val week of Cali: the TIFF is damaged
                p.write_bytes(b"II*\x00 not really a tiff")
                skipped_at.append(f"10_municipalities/images/{code}/image_{d.isoformat()}.tiff")
                continue
            n, dep, pop = names[code]
            rows.append({"id": f"{code}_{d.isoformat()}",
                         "text": f"Municipality {code}, epidemiological week {w + 1} of 2017. Municipality: {n}; Department: {dep}; Population: {pop}.",
                         "image_path": f"rgb_png/10_municipalities/{code}/image_{d.isoformat()}.png",
                         "label": "above_median" if counts[w] > med else "not_above_median",
                         "split": "test" if w >= 8 else "val" if w >= 6 else "train", "code": code})
    cases_lines.insert(5, cases_lines[4])  # an exact duplicate line (not counted twice)
    cases_lines.insert(9, "")  # a blank line
    recovered = 4
    skipped_at.append(f"10_municipalities/dengue_cases.csv:{cases_lines.index('5088,2017,3,n/a') + 1}")
    # a week the cases file lacks, and a file name with an impossible date
    for name in ("image_2018-06-06.tiff", "image_2017-02-30.tiff"):
        extra = sub / "images" / codes[0] / name
        tifffile.imwrite(str(extra), rng.integers(0, 3000, (12, 16, 16), dtype=np.uint16))
        skipped_at.append(f"10_municipalities/images/{codes[0]}/{name}")
    _write(sub / "dengue_cases.csv", "\n".join(cases_lines) + "\n")
    pd.DataFrame([{"Municipality code": "0" + c if c == "5001" else c, "Municipality": names[c][0], "Department": names[c][1],
                   "Population": names[c][2]} for c in codes]).to_csv(sub / "metadata.csv", index=False)
    return Fixture(root, pd.DataFrame(rows), recovered=recovered, skipped=len(skipped_at), skipped_at=skipped_at)


# -------------------------------------------------------------------------------------- mimic_cxr


LABELS = ["Atelectasis", "Cardiomegaly", "Consolidation", "Edema", "Enlarged Cardiomediastinum", "Fracture",
          "Lung Lesion", "Lung Opacity", "No Finding", "Pleural Effusion", "Pleural Other", "Pneumonia",
          "Pneumothorax", "Support Devices"]


def _gz_lines(path: Path, lines: List[str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with gzip.open(path, "wt") as f:
        f.write("\n".join(lines) + "\n")


def build_mimic_cxr(root: Path) -> Fixture:
    """Quirks: a dicom_id with a trailing space and a blank line in the metadata, ``Validate`` in the split
    file, a label written ``1,0`` (recovered); a split ``tset`` and a label ``yes`` (skipped: one image, and
    the two images of one study)."""
    meta, chex, split, rows = [], [], [], []
    patterns = [{"No Finding": 1.0}, {"Cardiomegaly": 1.0, "Edema": -1.0}, {"Pleural Effusion": 1.0, "Atelectasis": 0.0},
                {"Edema": 1.0, "Cardiomegaly": -1.0}]
    k = 0
    for s in range(8):
        subject = 10000032 + s * 1111
        sp = "test" if s >= 6 else "validate" if s == 5 else "train"
        for t in range(3):
            study = 50000000 + s * 100 + t
            lab = patterns[(s + t) % 4]
            chex.append({"subject_id": subject, "study_id": study, **{c: lab.get(c, np.nan) for c in LABELS}})
            folder = f"files/p{str(subject)[:2]}/p{subject}/s{study}"
            report = (f"                                 FINAL REPORT\n EXAMINATION:  CHEST (PA AND LAT)\n\n "
                      f"INDICATION:  ___ with cough {s}.\n\n COMPARISON:  None.\n\n FINDINGS: \n\n Heart size {t}.\n\n"
                      f" IMPRESSION: \n\n Finding {s}-{t}.\n")
            _write(root / f"{folder}.txt", report)
            for v in range(2 if t == 0 else 1):
                dicom = f"d{k:04d}-{s:02d}{t}{v}"
                meta.append({"dicom_id": dicom, "subject_id": subject, "study_id": study,
                             "PerformedProcedureStepDescription": "CHEST", "ViewPosition": "PA" if v == 0 else "LATERAL",
                             "Rows": 16, "Columns": 16, "StudyDate": 21800506, "StudyTime": 213014.5})
                split.append({"dicom_id": dicom, "study_id": study, "subject_id": subject, "split": sp})
                _image(root / folder / f"{dicom}.jpg", k)
                neg = [c for c, v_ in lab.items() if v_ == 1.0]
                unc = [c for c, v_ in lab.items() if v_ == -1.0]
                rows.append({"id": dicom, "text": f"INDICATION: ___ with cough {s}.", "image_path": f"{folder}/{dicom}.jpg",
                             "label": sorted(neg, key=LABELS.index), "label_uones": sorted(neg + unc, key=LABELS.index),
                             "split": {"validate": "val"}.get(sp, sp), "view": "PA" if v == 0 else "LATERAL",
                             "text_fi": f"FINDINGS: Heart size {t}. IMPRESSION: Finding {s}-{t}.", "study": study})
                k += 1

    def csv_lines(recs):
        return pd.DataFrame(recs).to_csv(index=False).splitlines()

    m, sp_, cx = csv_lines(meta), csv_lines(split), csv_lines(chex)
    m[3] = m[3].replace(meta[2]["dicom_id"], meta[2]["dicom_id"] + " ")  # line 4
    m.insert(10, "")  # blank line 11
    first_val = next(i for i, r in enumerate(split) if r["split"] == "validate")
    sp_[first_val + 1] = sp_[first_val + 1].replace("validate", "Validate")
    sp_[5] = sp_[5].replace("train", "tset")  # line 6: the split of image 4
    cx[3] = cx[3].replace(",1.0,", ",\"1,0\",", 1)  # line 4: the study of row 2 writes 1,0
    cx[8] = cx[8].replace(",1.0,", ",yes,", 1)  # line 9: row 7's study
    recovered = 4
    skipped_at = ["mimic-cxr-2.0.0-split.csv.gz:6", "mimic-cxr-2.0.0-chexpert.csv.gz:9"]
    bad_study = chex[7]["study_id"]
    rows = [r for r in rows if r["id"] != split[4]["dicom_id"] and r["study"] != bad_study]
    _gz_lines(root / "mimic-cxr-2.0.0-metadata.csv.gz", m)
    _gz_lines(root / "mimic-cxr-2.0.0-chexpert.csv.gz", cx)
    _gz_lines(root / "mimic-cxr-2.0.0-split.csv.gz", sp_)
    return Fixture(root, pd.DataFrame(rows), recovered=recovered, skipped=len(skipped_at), skipped_at=skipped_at)


# ------------------------------------------------------------------------------------------ musti


def build_musti(root: Path) -> Fixture:
    """Quirks: a label ``Yes``, a subset ``Train``, a blank line (recovered); an empty label and a subset
    ``deev`` (skipped)."""
    texts = ["The scent of roses filled the hall.", "Der Rauch der Pfeife hing im Zimmer.", "L'odeur du pain chaud.",
             "Il profumo del mare.", "Vonj po kavi.", "Fresh lilies on the table."]
    recs, rows = [], []
    for i in range(30):
        pos = i % 3 == 0
        sp = "test" if i >= 24 else "val" if i >= 18 else "train"
        img = f"artworks/art{i:03d}.jpg"
        _image(root / img, i)
        recs.append({"pair_id": f"m{i:03d}", "passage": texts[i % 6], "artwork": img, "same_source": int(pos),
                     "lang": "en", "subset": {"val": "dev"}.get(sp, sp)})
        if i not in (10, 20):
            rows.append({"id": f"m{i:03d}", "text": texts[i % 6], "image_path": img, "label": "yes" if pos else "no",
                         "split": sp, "language": "en"})
    lines = pd.DataFrame(recs).to_csv(index=False).splitlines()
    lines[4] = lines[4].replace(",1,en,", ",Yes,en,")  # row 3
    lines[8] = lines[8].replace(",train", ",Train")  # row 7
    lines[11] = lines[11].replace(",0,en,", ",,en,")  # row 10: no label
    lines[21] = lines[21].replace(",dev", ",deev")  # row 20
    lines.insert(15, "")
    _write(root / "pairs.csv", "\n".join(lines) + "\n")
    opts = dict(text_column="passage", image_column="artwork", label_column="same_source", split_column="subset",
                id_column="pair_id", language_column="lang")
    return Fixture(root, pd.DataFrame(rows), opts, recovered=3, skipped=2, skipped_at=["pairs.csv:12", "pairs.csv:23"])


# ------------------------------------------------------------------------------------------ esc50


def build_esc50(root: Path) -> Fixture:
    """Quirks: categories ``Dog`` and ``dgo`` (target 0), a file name with a trailing space, a blank line, a
    class ``Rain`` in class_texts.csv (recovered); a fold ``x`` and a category naming another target's class
    (skipped)."""
    import soundfile as sf

    cats = [(0, "dog"), (10, "rain"), (41, "chainsaw")]
    recs, rows = [], []
    t = np.linspace(0, 0.1, 800, endpoint=False)
    for target, cat in cats:
        for j in range(10):
            fold = 1 + j % 5
            fname = f"{fold}-{1000 + target * 10 + j}-A-{j}.wav"
            audio = (0.3 * np.sin(2 * np.pi * (200 + 40 * target + 10 * j) * t)).astype(np.float32)
            (root / "audio").mkdir(parents=True, exist_ok=True)
            sf.write(str(root / "audio" / fname), audio, 8000)
            recs.append({"filename": fname, "fold": fold, "target": target, "category": cat,
                         "esc10": cat in ("dog", "rain"), "src_file": 1000 + target * 10 + j, "take": "A"})
            if len(recs) not in (13, 24):
                rows.append({"id": fname[:-4], "text": f"the sound of {cat.replace('_', ' ')}", "audio_path": f"audio/{fname}",
                             "label": cat, "split": "test" if fold == 5 else "val" if fold == 4 else "train"})
    recs[2]["category"], recs[5]["category"], recs[8]["filename"] = "Dog", "dgo", recs[8]["filename"] + " "
    recs[12]["fold"], recs[23]["category"] = "x", "dog"  # rows 12 (rain) and 23 (chainsaw): skipped
    lines = pd.DataFrame(recs).to_csv(index=False).splitlines()
    lines.insert(20, "")
    (root / "meta").mkdir(parents=True, exist_ok=True)
    _write(root / "meta" / "esc50.csv", "\n".join(lines) + "\n")
    pd.DataFrame({"class": ["dog", "Rain", "chainsaw"], "text": [f"the sound of {c}" for _, c in cats]}).to_csv(
        root / "class_texts.csv", index=False)
    for _, cat in cats:
        for j in range(2):
            _image(root / "class_images" / cat / f"{j}.png", 100 + j)
        for j in range(3):  # the seed's layout: a folder of texts per class (class_texts="class_text_folders")
            (root / "class_text_folders" / cat).mkdir(parents=True, exist_ok=True)
            (root / "class_text_folders" / cat / f"{j}.txt").write_text(f"text {j} about the sound of {cat}\n")
    exp = pd.DataFrame(rows)
    exp["image_path"] = [f"class_images/{c}/{k % 2}.png" for c, k in zip(exp["label"], exp.groupby("label").cumcount())]
    return Fixture(root, exp, {"class_texts": "class_texts.csv", "class_images": "class_images"},
                   recovered=5, skipped=2, skipped_at=["meta/esc50.csv:14", "meta/esc50.csv:26"])


# ------------------------------------------------------------------------------------------ table


def build_table(root: Path) -> Fixture:
    """Quirks: a class ``Cat`` and a class `` dog`` among ``cat`` / ``dog``, a Windows path, an exact duplicate
    line, a blank line (recovered); an empty class and two rows that share a key but disagree (skipped)."""
    recs, rows = [], []
    for i in range(27):
        c = ["cat", "dog", "bird"][i % 3]
        img = f"photos/{c}_{i}.png"
        _image(root / img, i)
        recs.append({"key": f"k{i}", "caption": f"a photo of a small animal number {i}", "file": img, "class": c})
        if i not in (13, 19, 20):
            rows.append({"id": f"k{i}", "text": f"a photo of a small animal number {i}", "image_path": img, "label": c,
                         "split": None})
    recs[3]["class"], recs[7]["class"], recs[13]["class"] = "Cat", " dog", None
    recs[10]["file"] = recs[10]["file"].replace("/", "\\")
    recs[20]["key"] = "k19"  # the same key as the row before, other values
    lines = pd.DataFrame(recs).to_csv(index=False).splitlines()
    lines.insert(17, lines[16])  # line 17 (row 15) twice
    lines.insert(5, "")  # a blank line 6: later rows move one line down
    _write(root / "records.csv", "\n".join(lines) + "\n")
    return Fixture(root, pd.DataFrame(rows), dict(file="records.csv", text_column="caption", image_column="file",
                                                  label_column="class", id_column="key"),
                   recovered=5, skipped=3, skipped_at=["records.csv:16", "records.csv:23", "records.csv:24"])


BUILDERS: Dict[str, Callable[[Path], Fixture]] = {
    "daquar": build_daquar, "coco_qa": build_coco_qa, "fakeddit": build_fakeddit, "fakeddit_simple": build_fakeddit_simple,
    "fakeddit_seed": build_fakeddit_seed, "recipes5k": build_recipes5k, "brset": build_brset, "ham10000": build_ham10000, "satellite": build_satellite,
    "mimic_cxr": build_mimic_cxr, "musti": build_musti, "esc50": build_esc50, "table": build_table,
}


def build(name: str, folder: Path) -> Fixture:
    """Write the fixture of dataset ``name`` into ``folder`` (created) and return what loading must give."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    fx = BUILDERS[name](folder)
    (folder / ".fixture.json").write_text(json.dumps({"name": name, "options": fx.options}))
    return fx
