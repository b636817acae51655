"""The README's "True to the seeds" table cannot rot silently.

Every row names the code that implements a seed claim (``path.py::name``); the checker below fails when a
named file or name is gone, a row has no status or one other than "as the seed" / "deviation: ..." (a row
left "being changed" while the code moved on is refused), or a deviation links to no README section. A few
seed defaults marked "as the seed" are also checked against the code itself.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path
from typing import Dict, List, Optional, Set

REPO = Path(__file__).resolve().parents[1]
SECTION = "## True to the seeds"
STATUS = re.compile(r"^(as the seed\b|deviation\b[^:]*:)")
# a status that only says work is under way (what the table once allowed): the row must say what the code does
PENDING = re.compile(r"being changed|\bopen in issue|\bunder way\b", re.I)
REF = re.compile(r"`([\w./-]+\.(?:py|sh|txt|toml|md))(?:::([\w.]+))?`")
LINK = re.compile(r"\]\(#([\w-]+)\)")


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def anchors(readme: str) -> Set[str]:
    return {slug(m.group(1)) for m in re.finditer(r"^#{1,6} (.+)$", readme, re.M)}


def seed_rows(readme: str) -> List[List[str]]:
    """The cells of each body row of the one table in the section (header and rule left out)."""
    start = readme.index(SECTION)
    end = readme.find("\n## ", start + len(SECTION))
    body = readme[start: end if end >= 0 else len(readme)]
    lines = [ln for ln in body.splitlines() if ln.startswith("|")]
    rows = [[c.strip() for c in ln.strip().strip("|").split("|")] for ln in lines]
    return rows[2:]


def defined(path: Path, name: str) -> bool:
    """Whether ``name`` (``f``, ``Class``, ``Class.attr``) is defined at the top of ``path`` (or in that class)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))

    def names_in(body) -> Dict[str, Optional[ast.AST]]:
        out: Dict[str, Optional[ast.AST]] = {}
        for node in body:
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                out[node.name] = node
            elif isinstance(node, ast.Assign):
                for t in node.targets:
                    if isinstance(t, ast.Name):
                        out[t.id] = None
            elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
                out[node.target.id] = None
        return out

    first, *rest = name.split(".")
    scope = names_in(tree.body)
    if first not in scope:
        return False
    node = scope[first]
    for part in rest:
        if not isinstance(node, ast.ClassDef):
            return False
        inner = names_in(node.body)
        if part not in inner:
            return False
        node = inner[part]
    return True


def table_problems(readme: str, repo: Path = REPO) -> List[str]:
    """Everything wrong with the table, one line each (empty when it holds)."""
    if SECTION not in readme:
        return [f"README has no {SECTION!r} section"]
    rows = seed_rows(readme)
    if not rows:
        return ["the section holds no table rows"]
    known = anchors(readme)
    problems = []
    for i, cells in enumerate(rows, 1):
        if len(cells) != 4:
            problems.append(f"row {i}: {len(cells)} cells, want 4 (claim | seed | code | status)")
            continue
        claim, _, code, status = cells
        where = f"row {i} ({claim[:40]!r})"
        refs = REF.findall(code)
        if not refs:
            problems.append(f"{where}: names no file (`path.py::name`)")
        for file, name in refs:
            path = repo / file
            if not path.is_file():
                problems.append(f"{where}: {file} does not exist")
            elif name and path.suffix == ".py" and not defined(path, name):
                problems.append(f"{where}: {file} defines no {name}")
        if PENDING.search(status):
            problems.append(f"{where}: status {status[:30]!r} says a change is pending: rewrite the row against the "
                            "code as it is now ('as the seed' or 'deviation: what and why')")
        elif not STATUS.match(status):
            problems.append(f"{where}: status {status[:30]!r} is not 'as the seed' or 'deviation: ...'")
        links = LINK.findall(status)
        if status.startswith("deviation") and not links:
            problems.append(f"{where}: a deviation must link the README section that documents it")
        for a in links:
            if a not in known:
                problems.append(f"{where}: link #{a} names no README heading")
    return problems


def test_the_seed_table_holds():
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    assert table_problems(readme) == []
    rows = seed_rows(readme)
    assert len(rows) >= 50  # every claim of the four seeds, not a sample
    assert {r[1] for r in rows} == {"framework", "BERT + CLIP", "MUSTI", "seed 001"}
    # the section sits right after "Models, baselines and experiments"
    heads = re.findall(r"^## (.+)$", readme, re.M)
    assert heads[heads.index("True to the seeds") - 1] == "Models, baselines and experiments"


def test_the_checker_catches_a_rotten_table(tmp_path):
    (tmp_path / "utils").mkdir()
    (tmp_path / "utils" / "m.py").write_text("class A:\n    x: int = 1\n\ndef f():\n    pass\n")
    readme = "\n".join([
        "## Speed", "", SECTION, "", "| claim | seed | code | status |", "|---|---|---|---|",
        "| ok | framework | `utils/m.py::A.x`, `utils/m.py::f` | as the seed |",
        "| gone file | framework | `utils/gone.py::f` | as the seed |",
        "| gone name | framework | `utils/m.py::A.y` | as the seed ([Speed](#speed)) |",
        "| no status | framework | `utils/m.py::f` | |",
        "| no link | framework | `utils/m.py::f` | deviation: other numbers |",
        "| bad link | framework | `utils/m.py::f` | deviation: other ([x](#nowhere)) |",
        "| no code | framework | the loop | as the seed |",
        "| pending | framework | `utils/m.py::f` | being changed (issue 18): today as the seed |",
        "| pending deviation | framework | `utils/m.py::f` | deviation (open in issue 21): other ([Speed](#speed)) |",
        "", "## Next",
    ])
    problems = table_problems(readme, tmp_path)
    assert len(problems) == 8, problems
    for text in ("utils/gone.py does not exist", "defines no A.y", "status '' is not", "must link the README",
                 "#nowhere names no README heading", "names no file", "row 8 ('pending'): status 'being changed",
                 "row 9 ('pending deviation'): status 'deviation (open in issue 21)"):
        assert any(text in p for p in problems), (text, problems)


def test_the_section_offers_no_pending_status():
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    start = readme.index(SECTION)
    section = readme[start: readme.find("\n## ", start + len(SECTION))]
    assert not PENDING.search(section), PENDING.search(section)


def test_slug_matches_github_anchors():
    assert slug("The BERT + CLIP classifier's files load as they are") == "the-bert--clip-classifiers-files-load-as-they-are"
    assert slug("Alignment, unified space and retrieval (`Alignment/`)") == "alignment-unified-space-and-retrieval-alignment"


# ------------------------------------------------------------------ seed defaults marked "as the seed"
def test_head_and_training_defaults_are_the_seeds():
    from torch import nn

    from utils.models.fusion import HeadConfig, build_head
    from utils.models.losses import make_loss
    from utils.train.loop import TrainConfig

    h = HeadConfig()
    assert (h.hidden, h.late_hidden, h.late_blocks, h.dropout) == (256, 128, 2, 0.2)
    late = build_head("late_fusion", {"text": 10, "image": 6}, 3)
    kinds = [type(m).__name__ for m in late.branches[0].modules() if not isinstance(m, nn.Sequential)]
    assert kinds == ["Linear", "ReLU", "Dropout", "BatchNorm1d"] * 2
    assert late.branches[1][0][0].in_features == 6 and late.classifier.in_features == 2 * 128
    assert (TrainConfig().batch_size, TrainConfig().lr) == (64, 1e-3)
    assert isinstance(make_loss("binary"), nn.BCEWithLogitsLoss)
    assert isinstance(make_loss("multilabel"), nn.BCEWithLogitsLoss)
    assert isinstance(make_loss("multiclass"), nn.CrossEntropyLoss)


def test_the_seeds_backbones_and_models():
    from utils.extractors import ALIASES
    from utils.models.full import DEFAULT_IMAGE_MODEL, DEFAULT_TEXT_MODEL
    from utils.notebooks.embed_model import IMAGE_DEFAULT

    hub = {a: ALIASES[a][0] for a in ALIASES}
    originals = ["dinov2-small", "dinov2-base", "dinov2-large", "dinov2-giant", "sam-base", "sam-large", "sam-huge",
                 "convnextv2-tiny", "convnextv2-base", "convnextv2-large", "convnext-tiny", "convnext-small",
                 "convnext-base", "convnext-large", "swin-tiny", "swin-small", "swin-base", "vit-base", "vit-large",
                 "clip-vit-b16", "clip-vit-l14"]
    assert len(originals) == 21 and all(a in hub for a in originals)
    assert hub["clip-vit-b16"] == "clip:openai/clip-vit-base-patch16"  # the seed had the two CLIP names swapped
    assert hub["clip-vit-l14"] == "clip:openai/clip-vit-large-patch14"
    assert hub[IMAGE_DEFAULT] == "hf-image:facebook/dinov2-base"
    assert (DEFAULT_TEXT_MODEL, DEFAULT_IMAGE_MODEL) == ("bert-base-uncased", "google/vit-base-patch16-224-in21k")


def test_esc50_audio_is_seed_001s_clap():
    """Seed 001 embeds ESC-50 with laion/larger_clap_general; the notebook used laion/clap-htsat-unfused."""
    from utils.extractors import ALIASES
    from utils.notebooks import DATASET_NOTEBOOKS
    from utils.notebooks.embed_model import parameters

    spec = parameters("esc50", DATASET_NOTEBOOKS["esc50"])["AUDIO_EXTRACTOR"]
    assert ALIASES.get(spec, (spec,))[0] == "clap:laion/larger_clap_general"


def test_unified_space_defaults_are_the_seeds():
    from utils.align.contrastive import MultiModalInfoNCE
    from utils.align.unified import UnifiedConfig

    assert UnifiedConfig().dim == 256
    loss = MultiModalInfoNCE(["text", "image", "audio"], {"image-text": 0.5})
    assert loss.log_scale.requires_grad and abs(loss.temperature - 0.07) < 1e-6
    assert len(loss.pairs) == 3 and loss.weights[[p for p in loss.pairs if set(p.split("-")) == {"image", "text"}][0]] == 0.5


def test_seed_fidelity_defaults_of_issue_21():
    """The rows issue 21 turned to "as the seed": MUSTI's guided models and loss, one DINOv2 family, the BERT + CLIP
    Trainer's class weights and workers, and seed 001's encoders and merged clips for ESC-50."""
    from utils.experiment.baselines import BertClipConfig, FullTrainConfig
    from utils.experiment.runs import defaults
    from utils.extractors import ALIASES
    from utils.extractors.catalog import table as catalog_table
    from utils.models.guided import DEFAULT_IMAGE_EXTRACTORS, DEFAULT_TEXT_MODEL
    from utils.notebooks import DATASET_NOTEBOOKS, guided_model
    from utils.notebooks.alignment import SEED_UNIFIED_EXTRACTORS, unified_space_esc50_cells

    guided = guided_model.parameters("musti", DATASET_NOTEBOOKS["musti"])
    assert (guided["LOSS"], guided["FOCAL_GAMMA"], guided["FOCAL_ALPHA"]) == ("focal", 2.0, 0.3)
    assert guided["TEXT_MODEL"] == DEFAULT_TEXT_MODEL == "bert-base-multilingual-cased"
    assert "guided_tsf" in guided["GUIDED_MODELS"]
    for kind in ("guided", "guided_gated"):
        assert defaults(kind)["text_model"] == DEFAULT_TEXT_MODEL
        assert defaults(kind)["image_extractors"] == list(DEFAULT_IMAGE_EXTRACTORS) == guided["IMAGE_EXTRACTORS"]
    assert ["vit" in e for e in DEFAULT_IMAGE_EXTRACTORS] == [True, False] and "resnet34" in DEFAULT_IMAGE_EXTRACTORS[1]
    dinov2 = {r["alias"]: r for r in catalog_table() if r["alias"].startswith("dinov2-") and not r["alias"].endswith("-timm")}
    assert sorted(dinov2) == ["dinov2-base", "dinov2-giant", "dinov2-large", "dinov2-small"]
    assert all(r["spec"] == f"hf-image:facebook/{a}" and r["size"] == 224 for a, r in dinov2.items())
    assert BertClipConfig().class_weights == "balanced" and BertClipConfig().num_workers == FullTrainConfig().num_workers == 2
    hub = {m: ALIASES.get(s, (s,))[0] for m, s in SEED_UNIFIED_EXTRACTORS.items()}
    assert hub == {"TEXT_EXTRACTOR": "hf:bert-base-uncased", "IMAGE_EXTRACTOR": "clip:openai/clip-vit-large-patch14",
                   "AUDIO_EXTRACTOR": "clap:laion/larger_clap_general"}
    cell = next(c for c in unified_space_esc50_cells() if "parameters" in c.get("tags", []))
    params: dict = {}
    exec(cell["source"], {}, params)  # the notebook's defaults, literals only
    assert params["DATASET"] == "esc50" and params["DATASET_OPTIONS"]["merged"] == "merged"
    assert {k: params[k] for k in SEED_UNIFIED_EXTRACTORS} == SEED_UNIFIED_EXTRACTORS
