"""A trained fusion head as a folder you keep, hand on and apply: the Hugging Face layout, plain files.

::

    <folder>/
        config.json                what the head is and how it was made: head name and sizes, task, class names
                                   in order, positive class, decision threshold, the temperature fitted on
                                   validation, each modality's extractor (spec, options, resolved precision,
                                   width, identity), the training data's fingerprint, the test metrics with their
                                   intervals, library versions, and the sha256 of every other file and of itself
        model.safetensors          the head's weights
        preprocessing.safetensors  the standardiser (``mean``, ``std`` over the stacked features) and each
                                   modality's stand-in (``stand_in.<modality>``: its raw training mean), used
                                   when a record lacks that modality
        probes.safetensors         each extractor's vectors for the probe inputs in ``probes/``: an extractor
                                   that no longer gives them (other weights, other preprocessing) is refused
        probes/                    the probe inputs (``text.json``; ``image_0.png`` ...; ``audio_0.wav`` ...)
        README.md                  the model card (written by :mod:`utils.experiment.predict`)
        figures/                   the report's figures for this head

Nothing in the folder runs code when read: JSON, safetensors, PNG and WAV (no pickle, no ``torch.load``).
Plain files rather than ``huggingface_hub``'s ``PyTorchModelHubMixin``: the mixin saves a model's init
arguments and loads through the hub client, while this folder holds more than init arguments (the
standardiser, stand-ins, probes, checksums) and must load with no network and be checked before any weight
is read. The layout is still the hub's (``config.json``, ``model.safetensors``, ``README.md``), so
``huggingface_hub.upload_folder(folder_path=...)`` pushes it as it is.

:class:`FusionModel` turns per-modality vectors into probabilities; extracting those vectors from raw
records (and the model card) is the experiment layer's job (:mod:`utils.experiment.predict`).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence, Union

import numpy as np
import torch
from torch import nn

from .fusion import HEADS, HeadConfig, build_head
from .losses import probabilities

FORMAT = "mmfusion-fusion-head"  # config.json "model_type"
FORMAT_VERSION = 1
CONFIG = "config.json"
WEIGHTS = "model.safetensors"
PREPROCESSING = "preprocessing.safetensors"
PROBES = "probes.safetensors"
PROBE_DIR = "probes"
CARD = "README.md"
TASKS = ("binary", "multiclass", "multilabel")
PathLike = Union[str, os.PathLike]


class ModelFolderError(ValueError):
    """A folder is not a saved fusion model, or one of its files is damaged or was changed; names the file."""


def sha256_file(path: PathLike, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(chunk), b""):
            h.update(block)
    return h.hexdigest()


def config_digest(config: Mapping[str, Any]) -> str:
    """sha256 of the config's canonical JSON (the file checksums included), without the digest itself."""
    body = dict(config)
    if isinstance(body.get("integrity"), dict):
        body["integrity"] = {k: v for k, v in body["integrity"].items() if k != "config"}
    return hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":"), allow_nan=False).encode()).hexdigest()


@dataclass
class FusionModel:
    """A fusion head with everything it needs between per-modality vectors and calibrated probabilities.

    ``config`` is the content of ``config.json`` (see the module docstring); ``mean`` / ``std`` ``[1, D]``
    standardise the stacked features (None when the head was trained on raw vectors); ``stand_ins[m]``
    ``[D_m]`` replaces modality ``m`` of a record that lacks it; ``probes[m]`` ``[P, D_m]`` are the extractor's
    vectors for the probe inputs (``probe_inputs[m]``: texts, or file names inside ``probes/``).
    """

    head: nn.Module
    config: Dict[str, Any]
    mean: Optional[np.ndarray] = None
    std: Optional[np.ndarray] = None
    stand_ins: Dict[str, np.ndarray] = field(default_factory=dict)
    probes: Dict[str, np.ndarray] = field(default_factory=dict)
    probe_inputs: Dict[str, List[str]] = field(default_factory=dict)
    probe_files: Dict[str, bytes] = field(default_factory=dict)  # name inside probes/ -> bytes (images, audio)
    folder: Optional[Path] = None  # where it was loaded from or saved to

    # ----------------------------------------------------------------------------------- what it is
    @property
    def name(self) -> str:
        return str(self.config["head"])

    @property
    def task(self) -> str:
        return str(self.config["task"])

    @property
    def classes(self) -> List[str]:
        return list(self.config["classes"])

    @property
    def modalities(self) -> List[str]:
        return list(self.config["modalities"])

    @property
    def dims(self) -> Dict[str, int]:
        return {m: int(self.config["dims"][m]) for m in self.modalities}

    @property
    def temperature(self) -> float:
        return float(self.config.get("temperature") or 1.0)

    @property
    def threshold(self) -> float:
        return float(self.config.get("threshold", 0.5))

    @property
    def extractors(self) -> Dict[str, Dict[str, Any]]:
        """modality -> the extractor record (``spec``, ``options``, ``identity``, ``dim``, ``precision`` ...)."""
        return dict(self.config.get("extractors") or {})

    def __repr__(self) -> str:
        return (f"FusionModel({self.name!r}, task={self.task}, classes={len(self.classes)}, modalities={self.dims}"
                f"{', from ' + str(self.folder) if self.folder else ''})")

    # -------------------------------------------------------------------------------- predicting
    def checked(self, vectors: Mapping[str, np.ndarray]) -> "tuple[list, int]":
        """The modalities' arrays in the saved order (float32, not copied when they already are) and the row count;
        a clear error for a missing modality, a wrong width or rows that do not match."""
        missing = [m for m in self.modalities if m not in vectors]
        if missing:
            raise ValueError(f"{self}: no vectors for modality {missing}; the model reads {self.modalities}")
        parts, n = [], None
        for m in self.modalities:
            v = np.asarray(vectors[m], dtype=np.float32)
            if v.ndim != 2 or v.shape[1] != self.dims[m]:
                raise ValueError(f"{m} vectors have shape {v.shape}, but the model was trained on {self.dims[m]}-d "
                                 f"{m} vectors from {self.extractors.get(m, {}).get('spec', 'its extractor')}: "
                                 "embed the records with the model's own extractor")
            if n is not None and len(v) != n:
                raise ValueError(f"{m} has {len(v)} rows, the other modalities {n}: give one row per record in each")
            n = len(v)
            parts.append(v)
        return parts, int(n or 0)

    def features(self, vectors: Mapping[str, np.ndarray], rows: Optional[slice] = None) -> np.ndarray:
        """The head's input ``[N, sum D_m]``: the modalities side by side in the saved order, standardised
        (``rows``: only those rows, so a large input is built one block at a time)."""
        parts, n = self.checked(vectors)
        rows = rows or slice(0, n)
        X = np.concatenate([p[rows] for p in parts], axis=1) if len(parts) > 1 else np.array(parts[0][rows])
        if self.mean is not None:
            X -= self.mean
            X /= self.std
        return np.ascontiguousarray(X, dtype=np.float32)

    @torch.no_grad()
    def logits(self, vectors: Mapping[str, np.ndarray], batch_size: int = 8192) -> np.ndarray:
        """Raw logits ``[N, n_out]`` (fp32, CPU), built and scored one block of ``batch_size`` rows at a time
        (the features of 100,000 records never sit in memory at once; blocks stay in the CPU's cache)."""
        _, n = self.checked(vectors)
        self.head.eval()
        dev = next(self.head.parameters()).device
        n_out = int(self.config["n_outputs"])
        out = np.empty((n, n_out), np.float32)
        for i in range(0, n, batch_size):
            X = torch.from_numpy(self.features(vectors, slice(i, i + batch_size)))
            out[i:i + batch_size] = self.head(X.to(dev)).float().cpu().numpy()
        return out

    def proba_from_logits(self, logits: np.ndarray, calibrated: bool = True) -> np.ndarray:
        """Probabilities from logits: ``[N]`` (binary: of the positive class) or ``[N, C]``; divided by the saved
        temperature first when ``calibrated``."""
        z = torch.from_numpy(np.asarray(logits, dtype=np.float32))
        if calibrated and self.temperature != 1.0:
            z = z / self.temperature
        return probabilities(z, self.task).float().numpy()

    def predict_proba(self, vectors: Mapping[str, np.ndarray], calibrated: bool = True) -> np.ndarray:
        """Calibrated (unless ``calibrated=False``) probabilities for per-modality vectors ``{m: [N, D_m]}``."""
        return self.proba_from_logits(self.logits(vectors), calibrated)

    def decide(self, proba: np.ndarray) -> np.ndarray:
        """Class indices ``[N]`` (binary, multiclass) or a 0/1 matrix ``[N, C]`` (multilabel) at the saved threshold."""
        if self.task == "multiclass":
            return np.asarray(proba).argmax(axis=1)
        return (np.asarray(proba) >= self.threshold).astype(np.int64)

    # -------------------------------------------------------------------------------- saving
    def save(self, folder: PathLike, overwrite: bool = False, card: Optional[str] = None,
             figures: Optional[Mapping[str, PathLike]] = None) -> Path:
        """Write the folder atomically (a temporary folder beside it, renamed at the end): a reader never sees a
        half-written model. ``card``: the model card's text; ``figures``: name -> PNG path, copied to ``figures/``.
        An existing folder is replaced only with ``overwrite=True``."""
        from safetensors.numpy import save_file as save_numpy
        from safetensors.torch import save_file as save_torch

        folder = Path(folder)
        if folder.exists() and not overwrite:
            raise FileExistsError(f"{folder} already exists: pass overwrite=True to replace it, or choose another folder")
        folder.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", suffix=".tmp", dir=folder.parent))
        try:
            state = {k: v.detach().cpu().contiguous() for k, v in self.head.state_dict().items()}
            save_torch(state, str(tmp / WEIGHTS), metadata={"format": FORMAT})
            prep: Dict[str, np.ndarray] = {f"stand_in.{m}": np.asarray(v, np.float32).reshape(-1)
                                           for m, v in self.stand_ins.items()}
            if self.mean is not None:
                prep["mean"] = np.asarray(self.mean, np.float32).reshape(1, -1)
                prep["std"] = np.asarray(self.std, np.float32).reshape(1, -1)
            save_numpy(prep, str(tmp / PREPROCESSING), metadata={"format": FORMAT})
            files = [WEIGHTS, PREPROCESSING]
            if self.probes:
                save_numpy({m: np.asarray(v, np.float32) for m, v in self.probes.items()}, str(tmp / PROBES),
                           metadata={"format": FORMAT})
                files.append(PROBES)
            if self.probe_files or self.probe_inputs.get("text"):
                (tmp / PROBE_DIR).mkdir()
                for name, data in self.probe_files.items():
                    (tmp / PROBE_DIR / name).write_bytes(data)
                    files.append(f"{PROBE_DIR}/{name}")
                if self.probe_inputs.get("text"):
                    (tmp / PROBE_DIR / "text.json").write_text(json.dumps(self.probe_inputs["text"], ensure_ascii=False))
                    files.append(f"{PROBE_DIR}/text.json")
            if card is not None:
                (tmp / CARD).write_text(card, encoding="utf-8")
                files.append(CARD)
            for name, src in (figures or {}).items():
                (tmp / "figures").mkdir(exist_ok=True)
                dst = f"figures/{name}{Path(src).suffix or '.png'}"
                shutil.copyfile(src, tmp / dst)
                files.append(dst)
            config = dict(self.config)
            config["probe_inputs"] = {m: list(v) for m, v in self.probe_inputs.items()}
            config["integrity"] = {"algorithm": "sha256", "files": {f: sha256_file(tmp / f) for f in sorted(files)}}
            config["integrity"]["config"] = config_digest(config)
            (tmp / CONFIG).write_text(json.dumps(config, indent=1, sort_keys=False, allow_nan=False), encoding="utf-8")
            for p in tmp.rglob("*"):  # readable by collaborators as the umask allows (mkdtemp makes 0700)
                os.chmod(p, _mode(p.is_dir()))
            os.chmod(tmp, _mode(True))
            _replace_folder(tmp, folder)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        self.config, self.folder = config, folder
        return folder

    # -------------------------------------------------------------------------------- loading
    @classmethod
    def load(cls, folder: PathLike, device: str = "cpu") -> "FusionModel":
        """Load a saved model, checking every file against the checksums in ``config.json`` before reading it.

        Raises :class:`ModelFolderError` naming the file (not a model folder, unreadable or changed config,
        a weights file that does not match its checksum or the head's shapes).
        """
        from safetensors import SafetensorError
        from safetensors.numpy import load_file as load_numpy
        from safetensors.torch import load_file as load_torch

        folder = Path(folder)
        config = read_config(folder)
        for name, digest in config["integrity"]["files"].items():
            path = folder / name
            if not path.is_file():
                raise ModelFolderError(f"{path} is missing (config.json lists it): copy the whole model folder")
            if sha256_file(path) != digest:
                raise ModelFolderError(f"{path} does not match its checksum in {folder / CONFIG}: the file was changed or "
                                       "damaged after the model was saved. Copy the folder again from where it was made.")
        for needed in (WEIGHTS, PREPROCESSING):
            if needed not in config["integrity"]["files"]:
                raise ModelFolderError(f"{folder / CONFIG}: its checksums do not list {needed}; save the model again")
        dims = {m: int(d) for m, d in config["dims"].items()}
        head = build_head(config["head"], dims, int(config["n_outputs"]), HeadConfig(**config["head_config"]))
        try:
            state = load_torch(str(folder / WEIGHTS))
            head.load_state_dict(state, strict=True)
        except (SafetensorError, RuntimeError, OSError) as e:
            raise ModelFolderError(f"{folder / WEIGHTS} does not hold the weights of a {config['head']} head with inputs "
                                   f"{dims} and {config['n_outputs']} output(s) ({e})") from None
        head.eval().to(device)
        try:
            prep = load_numpy(str(folder / PREPROCESSING))
            probes = load_numpy(str(folder / PROBES)) if (folder / PROBES).is_file() else {}
        except (SafetensorError, OSError) as e:
            raise ModelFolderError(f"{folder}: a preprocessing file could not be read ({e}); save the model again") from None
        D = sum(dims.values())
        mean, std = prep.get("mean"), prep.get("std")
        if config.get("standardize", True) and (mean is None or mean.shape != (1, D) or std.shape != (1, D)):
            raise ModelFolderError(f"{folder / PREPROCESSING}: mean / std must be [1, {D}]; save the model again")
        stand_ins = {m: prep[f"stand_in.{m}"] for m in dims if f"stand_in.{m}" in prep}
        for m, v in stand_ins.items():
            if v.shape != (dims[m],):
                raise ModelFolderError(f"{folder / PREPROCESSING}: stand_in.{m} has shape {v.shape}, not ({dims[m]},)")
        probe_inputs = {m: [str(x) for x in v] for m, v in (config.get("probe_inputs") or {}).items()}
        probe_files = {p.name: p.read_bytes() for p in sorted((folder / PROBE_DIR).glob("*")) if p.is_file()
                       and p.name != "text.json"} if (folder / PROBE_DIR).is_dir() else {}
        return cls(head, config, mean if config.get("standardize", True) else None,
                   std if config.get("standardize", True) else None, stand_ins, dict(probes), probe_inputs, probe_files,
                   folder)


def read_config(folder: Path) -> Dict[str, Any]:
    """``config.json`` of a saved model, parsed and checked (format, fields, its own checksum)."""
    path = folder / CONFIG
    if not folder.is_dir():
        raise ModelFolderError(f"{folder} is not a folder: give the folder a model was saved to (it holds {CONFIG} and "
                               f"{WEIGHTS}); python -m utils prints it after training")
    if not path.is_file():
        raise ModelFolderError(f"{folder} is not a saved fusion model (no {CONFIG}): give the folder a model was saved "
                               "to, e.g. results/models/embed_model_synthetic")
    try:
        config = json.loads(path.read_bytes().decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ModelFolderError(f"{path} is not valid UTF-8 JSON ({e}): the file is damaged; copy the folder again") from None
    if not isinstance(config, dict) or config.get("model_type") != FORMAT:
        found = config.get("model_type") if isinstance(config, dict) else type(config).__name__
        raise ModelFolderError(f"{path}: model_type is {found!r}, not {FORMAT!r}: this folder is not a fusion model saved "
                               "by this framework")
    if int(config.get("format_version", 0)) > FORMAT_VERSION:
        raise ModelFolderError(f"{path}: format_version {config.get('format_version')} is newer than this version reads "
                               f"({FORMAT_VERSION}): update the package")
    integrity = config.get("integrity")
    if not isinstance(integrity, dict) or not isinstance(integrity.get("files"), dict):
        raise ModelFolderError(f"{path} has no checksums (integrity): save the model again")
    if integrity.get("config") != config_digest(config):
        raise ModelFolderError(f"{path} was changed after the model was saved (its checksum no longer matches): the "
                               "model's classes, threshold or extractors cannot be trusted. Copy the folder again, or "
                               "save the model again from its run")
    check_fields(config, path)
    return config


def check_fields(config: Mapping[str, Any], path: Path) -> None:
    """Every field the model needs, with the right type; a clear error naming the field otherwise."""

    def bad(field_: str, why: str) -> ModelFolderError:
        return ModelFolderError(f"{path}: field {field_!r} {why}")

    if config.get("head") not in HEADS.names():
        raise bad("head", f"is {config.get('head')!r}, not one of {HEADS.names()}")
    if config.get("task") not in TASKS:
        raise bad("task", f"is {config.get('task')!r}, not one of {TASKS}")
    classes = config.get("classes")
    if not isinstance(classes, list) or len(classes) < 2 or not all(isinstance(c, str) for c in classes):
        raise bad("classes", "must be a list of at least two class names")
    dims, mods = config.get("dims"), config.get("modalities")
    if not isinstance(dims, dict) or not isinstance(mods, list) or list(dims) != mods:
        raise bad("dims", "must map each of 'modalities' (in order) to its width")
    if not all(isinstance(d, int) and d > 0 for d in dims.values()):
        raise bad("dims", f"must hold positive widths, got {dims}")
    n_out = 1 if config["task"] == "binary" else len(classes)
    if config.get("n_outputs") != n_out:
        raise bad("n_outputs", f"is {config.get('n_outputs')!r}; a {config['task']} head over {len(classes)} classes has {n_out}")
    T = config.get("temperature", 1.0)
    if not isinstance(T, (int, float)) or not (math.isfinite(T) and T > 0):
        raise bad("temperature", f"must be a positive number, got {T!r}")
    thr = config.get("threshold", 0.5)
    if not isinstance(thr, (int, float)) or not 0 < thr < 1:
        raise bad("threshold", f"must be in (0, 1), got {thr!r}")
    if not isinstance(config.get("head_config"), dict):
        raise bad("head_config", "must be an object of HeadConfig fields")
    unknown = set(config["head_config"]) - set(HeadConfig.__dataclass_fields__)
    if unknown:
        raise bad("head_config", f"has unknown field(s) {sorted(unknown)}")


def _mode(is_dir: bool) -> int:
    from ..io import created_mode

    return created_mode(is_dir)


def _replace_folder(tmp: Path, folder: Path) -> None:
    """Rename ``tmp`` to ``folder``; an existing ``folder`` is moved aside first and deleted after."""
    if not folder.exists():
        os.replace(tmp, folder)
        return
    old = folder.with_name(f".{folder.name}.old-{os.getpid()}")
    os.replace(folder, old)
    try:
        os.replace(tmp, folder)
    except BaseException:
        os.replace(old, folder)
        raise
    shutil.rmtree(old, ignore_errors=True)


def probe_texts() -> List[str]:
    """The probe texts every saved model records its text extractor's vectors for."""
    return [
        "A chest radiograph shows a small left pleural effusion.",
        "A red ceramic mug stands on a wooden table next to a window.",
        "Die Katze schläft auf dem Sofa; le chien court dans le jardin.",
    ]


def probe_images(size: int = 96) -> Dict[str, bytes]:
    """Three probe images (PNG bytes): a colour gradient, a checkerboard, and seeded noise (stored in the folder,
    so a check does not depend on a random generator's stream staying the same across versions)."""
    import io

    from PIL import Image

    y, x = np.mgrid[0:size, 0:size].astype(np.float32) / (size - 1)
    grad = np.stack([x, y, 1 - x * y], axis=-1)
    checker = (((np.arange(size)[:, None] // 12) + (np.arange(size)[None, :] // 12)) % 2).astype(np.float32)
    board = np.stack([checker, 0.3 + 0.4 * checker, 1 - checker], axis=-1)
    noise = np.random.default_rng(0).random((size, size, 3), dtype=np.float32)
    out = {}
    for i, arr in enumerate((grad, board, noise)):
        buf = io.BytesIO()
        Image.fromarray((arr * 255).round().astype(np.uint8), "RGB").save(buf, format="PNG")
        out[f"image_{i}.png"] = buf.getvalue()
    return out


def probe_audio(rate: int = 48000, seconds: float = 1.0) -> Dict[str, bytes]:
    """Two probe clips (WAV bytes, float32 mono): a 440 Hz tone and a chirp."""
    import io

    import soundfile as sf

    t = np.arange(int(rate * seconds), dtype=np.float64) / rate
    clips = (0.4 * np.sin(2 * np.pi * 440 * t), 0.4 * np.sin(2 * np.pi * (200 + 1800 * t) * t))
    out = {}
    for i, clip in enumerate(clips):
        buf = io.BytesIO()
        sf.write(buf, clip.astype(np.float32), rate, format="WAV", subtype="FLOAT")
        out[f"audio_{i}.wav"] = buf.getvalue()
    return out


def cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Row-wise cosine similarity of ``a [P, D]`` and ``b [P, D]``."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    na, nb = np.linalg.norm(a, axis=1), np.linalg.norm(b, axis=1)
    return (a * b).sum(axis=1) / np.maximum(na * nb, 1e-12)


def probe_items(model: FusionModel, modality: str, folder: Path) -> Sequence[Any]:
    """The probe inputs of ``modality`` as an extractor takes them: texts, or file paths written into ``folder``."""
    if modality == "text":
        return list(model.probe_inputs.get("text") or [])
    paths = []
    for name in model.probe_inputs.get(modality) or []:
        p = folder / name
        p.write_bytes(model.probe_files[name])
        paths.append(str(p))
    return paths
