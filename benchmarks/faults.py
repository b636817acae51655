"""Reliability probe: try to make the store lie or jam, and feed the framework bad inputs; report what happened.

Run: ``python benchmarks/faults.py`` (about two minutes on 2 shared CPU cores; CI runs it through
tests/test_faults.py).

Each case ends in one of:

- ``identical``: the job finished (after a resume where it was killed) and its vectors are bit-identical to an
  uninterrupted run (or, for inputs, equal to what the correct decoding gives);
- ``repaired``: damage was found and fixed by itself (damaged shards recomputed), vectors identical;
- ``refused``: a clear error naming the file, row or option (and nothing wrong was written);
- ``reported``: loaded / embedded / scored, and what the user should know is said (a load report naming the rows
  a change touched, a warning naming a truncated or unspellable text, a note on a result row whose interval or
  score means little);
- ``WRONG``: finished without complaint but the result is wrong (the goal is zero);
- ``UNCLEAR``: an error that does not say what is wrong (a raw numpy / JSON / Python error).

It prints one line per case (``case: outcome (detail)``) and totals as ``name: value`` lines.
"""

from __future__ import annotations

import argparse
import errno
import hashlib
import io
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from utils.extractors.base import Extractor  # noqa: E402

GOOD = ("identical", "repaired", "refused", "reported")
DIM = 16


# ---------------------------------------------------------------------------------------- fixtures
class Det(Extractor):
    """A deterministic text extractor: each text's vector comes from a hash of it (so any mix-up shows)."""

    family, modality = "det", "text"

    def __init__(self, model_id: str = "m", **options: Any):
        super().__init__(model_id, **options)
        self.calls, self.rows, self.sleep = 0, 0, 0.0

    def load(self, device: Any = "auto") -> "Det":
        """A hash needs no model and no torch: the probe's child jobs start in a fraction of a second."""
        self._device = "cpu"
        return self

    def _encode(self, items, batch_size, device, show_progress, on_error):
        self.calls += 1
        self.rows += len(items)
        if self.sleep:
            time.sleep(self.sleep)
        return np.stack([vector_of(t) for t in items])


def vector_of(text: str) -> np.ndarray:
    seed = int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "little")
    return np.random.default_rng(seed).standard_normal(DIM).astype(np.float32)


class Bytes(Extractor):
    """A deterministic "image" extractor that reads each file's bytes (a replaced file gives another vector)."""

    family, modality = "bytes", "image"

    rows = 0  # rows encoded by every Bytes extractor so far (what a reuse saved)

    def _encode(self, items, batch_size, device, show_progress, on_error):
        Bytes.rows += len(items)
        return np.stack([vector_of(Path(p).read_bytes().hex()) for p in items])


def text_dataset(n: int, name: str = "probe", edit: bool = False):
    """``n`` text rows; ``edit``: row 3's text changed (the same ids, other inputs)."""
    from utils.data import DatasetSpec, MultimodalDataset

    splits = ["train"] * 6 + ["val"] * 2 + ["test"] * 2
    df = pd.DataFrame({"id": [f"r{i:05d}" for i in range(n)], "text": [f"text number {i} " * (1 + i % 4) for i in range(n)],
                       "label": ["ab"[i % 2] for i in range(n)], "split": [splits[i % 10] for i in range(n)]})
    if edit:
        df.loc[3, "text"] = "an edited text"
    return MultimodalDataset(df, DatasetSpec(name=name, task="binary", classes=["a", "b"], modalities=["text"]))


def reference(ds) -> np.ndarray:
    return np.stack([vector_of(t) for t in ds.items("text")])


def leftovers(folder: Path) -> List[str]:
    """Files a finished store must not keep: shards, temporary files, lock files."""
    out = []
    if (folder / "shards").exists():
        out.append("shards/")
    out += [p.name for p in folder.rglob("*.tmp")]
    out += [f"locks/{p.name}" for p in (folder / "locks").glob("*.lock")] if (folder / "locks").is_dir() else []
    return out


# ------------------------------------------------------------------------------------------ child
def child(argv: Sequence[str]) -> None:
    """One extraction job in its own process; ``--kill STAGE --hit K`` sends SIGKILL to itself at that point."""
    p = argparse.ArgumentParser()
    p.add_argument("root")
    p.add_argument("--n", type=int, default=60)
    p.add_argument("--shard-size", type=int, default=10)
    p.add_argument("--kill", default="")
    p.add_argument("--hit", type=int, default=1)
    p.add_argument("--sleep", type=float, default=0.0)
    p.add_argument("--enospc", default="")
    p.add_argument("--normalize", action="store_true", help="L2-normalise the stored vectors")
    p.add_argument("--edit", action="store_true", help="row 3's text edited (other inputs, same ids)")
    p.add_argument("--start-at", type=float, default=0.0, help="wait for this time.time() before embedding")
    p.add_argument("--out", default="", help="save the job's vectors (table order) here")
    a = p.parse_args(argv)
    import utils.store
    from utils.embed import embed
    from utils.store import StoreBusyError, StoreMismatchError

    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    hits: Dict[str, int] = {}

    def hook(stage: str) -> None:
        hits[stage] = hits.get(stage, 0) + 1
        if stage == a.kill and hits[stage] == a.hit:
            os.kill(os.getpid(), signal.SIGKILL)
        if stage == a.enospc:
            raise OSError(errno.ENOSPC, "No space left on device")

    utils.store.FAULT_HOOK = hook
    if a.enospc == "shard-write":  # the disk fills while the third shard's vectors are written
        import utils.store.files as files

        real = files.HashingWriter.write
        seen = {"n": 0}

        def write(self, data):
            seen["n"] += 1
            if seen["n"] == 3 * 2 * 3:  # about the third shard
                raise OSError(errno.ENOSPC, "No space left on device")
            return real(self, data)

        files.HashingWriter.write = write
    ds = text_dataset(a.n, edit=a.edit)
    ext = Det()
    ext.sleep = a.sleep
    if a.start_at:
        time.sleep(max(0.0, a.start_at - time.time()))
    try:
        store = embed(ds, "text", ext, root=a.root, shard_size=a.shard_size, show_progress=False, normalize=a.normalize)
    except (StoreMismatchError, StoreBusyError) as e:  # refused: said on stdout for the probe to judge
        print(json.dumps({"refused": type(e).__name__, "message": str(e)}))
        sys.exit(3)
    if a.out:
        np.save(a.out, store.aligned(ds.df["id"], verify="full"))
    print(json.dumps({"complete": store.is_complete(), "calls": ext.calls}))


def run_child(root: Path, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run([sys.executable, __file__, "child", str(root), *args], capture_output=True, text=True,
                          timeout=timeout, env=env)


def popen_child(root: Path, *args: str) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.Popen([sys.executable, __file__, "child", str(root), *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env)


def store_folder(root: Path) -> Path:
    return root / "probe" / "text" / "det_m"


def check_store(root: Path, n: int = 60) -> Tuple[str, str]:
    from utils.store import EmbeddingStore

    ds = text_dataset(n)
    folder = store_folder(root)
    store = EmbeddingStore(folder)
    if not store.is_complete():
        return "WRONG", "the store is not complete after the rerun"
    got = store.aligned(ds.df["id"], verify="full")
    if not np.array_equal(got, reference(ds)):
        return "WRONG", "vectors differ from an uninterrupted run"
    left = leftovers(folder)
    if left:
        return "WRONG", f"the finished store keeps {left}"
    return "identical", ""


# ------------------------------------------------------------------------------------------ cases
class Probe:
    def __init__(self, work: Path, verbose: bool = False):
        self.work, self.verbose = work, verbose
        self.rows: List[Tuple[str, str, str]] = []

    def case(self, name: str, fn: Callable[[], Tuple[str, str]]) -> None:
        t0 = time.perf_counter()
        try:
            outcome, detail = fn()
        except Exception as e:  # noqa: BLE001 -- an exception nobody expected is itself a finding
            outcome, detail = "UNCLEAR", f"{type(e).__name__}: {str(e)[:300]}"
            if self.verbose:
                traceback.print_exc()
        detail = " ".join(detail.split())
        self.rows.append((name, outcome, detail))
        print(f"{name}: {outcome}" + (f" ({detail[:160]})" if detail else "") + f" [{time.perf_counter() - t0:.1f} s]",
              flush=True)

    def folder(self, name: str) -> Path:
        p = self.work / name
        shutil.rmtree(p, ignore_errors=True)
        p.mkdir(parents=True)
        return p


class Warnings(logging.Handler):
    """Collects the package's warnings during a case (what the user was told)."""

    def __init__(self):
        super().__init__(logging.WARNING)
        self.lines: List[str] = []

    def emit(self, record):
        self.lines.append(record.getMessage().splitlines()[-1].strip("- "))

    def __enter__(self):
        logger = logging.getLogger("utils")
        self.level = logger.level
        logger.setLevel(logging.WARNING)
        logger.addHandler(self)
        return self

    def __exit__(self, *exc):
        logger = logging.getLogger("utils")
        logger.removeHandler(self)
        logger.setLevel(self.level)

    def first(self) -> str:
        return self.lines[0] if self.lines else ""


def refused(fn: Callable[[], Any], errors: Tuple[type, ...], needles: Sequence[str], forbidden: Sequence[str] = ()
            ) -> Tuple[str, str]:
    """Run ``fn``: a clear refusal is an error of ``errors`` whose text holds every needle (and no forbidden text)."""
    try:
        fn()
    except SystemExit as e:
        text = str(e.code)
        ok = all(n.lower() in text.lower() for n in needles) and not any(f in text for f in forbidden)
        return ("refused", text[:200]) if ok else ("UNCLEAR", text[:200])
    except errors as e:
        text = str(e)
        ok = all(n.lower() in text.lower() for n in needles) and not any(f in text + repr(e) for f in forbidden)
        return ("refused", text[:200]) if ok else ("UNCLEAR", f"{type(e).__name__}: {text[:200]}")
    except Exception as e:  # noqa: BLE001
        return "UNCLEAR", f"{type(e).__name__}: {str(e)[:200]}"
    return "WRONG", "accepted without an error"


# --------------------------------------------------------------------------------- store: kills
KILL_POINTS = [  # (stage, which hit) inside embed(): 6 shards of 10 rows
    ("shard.ids", 3), ("shard.meta", 2), ("shard.done", 4), ("merge.locked", 1), ("merge.block", 3),
    ("merge.written", 1), ("merge.vectors_in_place", 1), ("merge.ids_in_place", 1), ("merge.manifest", 1),
    ("merge.removing", 1),
]


RANDOM_KILLS = 20


def kill_cases(p: Probe) -> None:
    for stage, hit in KILL_POINTS:
        def run(stage=stage, hit=hit):
            root = p.folder(f"kill-{stage}")
            first = run_child(root, "--kill", stage, "--hit", str(hit))
            if first.returncode != -signal.SIGKILL:
                return "UNCLEAR", f"the kill point was not reached (exit {first.returncode}): {first.stderr[-300:]}"
            t0 = time.perf_counter()
            again = run_child(root, timeout=60)
            if again.returncode != 0:
                return "UNCLEAR", f"the rerun failed: {again.stderr.strip().splitlines()[-1:]}"
            outcome, detail = check_store(root)
            return outcome, detail or f"resumed in {time.perf_counter() - t0:.1f} s"
        p.case(f"kill -9 at {stage} (hit {hit})", run)

    def external_kill():
        root = p.folder("kill-external")
        proc = popen_child(root, "--sleep", "0.3")
        shards = store_folder(root) / "shards"
        deadline = time.time() + 30
        while time.time() < deadline and len(list(shards.glob("*[0-9].npy"))) < 2:
            time.sleep(0.02)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        again = run_child(root, timeout=60)
        if again.returncode != 0:
            return "UNCLEAR", again.stderr[-300:]
        return check_store(root)
    p.case("kill -9 from outside during extraction", external_kill)

    def anywhere(kills: int = RANDOM_KILLS, seed: int = 7):
        """SIGKILL at ``kills`` seeded random moments of a job's life (imports, extraction, merge, clean-up:
        not only at the named points), each time restarting on the same store. A job that ended before its
        kill moment must have left the store bit for bit that of an uninterrupted run; the store is then
        wiped so the next kill again meets a job with all its work ahead. The last store is finished by one
        clean run and compared too."""
        def run():
            rng = np.random.default_rng(seed)
            timing = p.folder("kill-anywhere-timing")
            t0 = time.perf_counter()
            first = run_child(timing, "--sleep", "0.1", "--shard-size", "5")
            total = time.perf_counter() - t0
            if first.returncode != 0:
                return "UNCLEAR", first.stderr[-300:]
            root = p.folder("kill-anywhere")
            landed, fresh = 0, True
            for _ in range(kills):
                proc = popen_child(root, "--sleep", "0.1", "--shard-size", "5")
                # a fresh job: anywhere in its life; a resumed one has less left, so its moment comes earlier
                time.sleep(float(rng.uniform(0.15, 1.0) if fresh else rng.uniform(0.1, 0.7)) * total)
                alive = proc.poll() is None
                proc.send_signal(signal.SIGKILL)
                proc.communicate()
                if alive:
                    landed += 1
                    fresh = False
                    continue
                outcome, detail = check_store(root)  # the job ended first: what it left must be exact
                if outcome != "identical":
                    return outcome, f"after {landed} kills: {detail}"
                shutil.rmtree(root)
                root.mkdir()
                fresh = True
            again = run_child(root, "--shard-size", "5", timeout=60)
            if again.returncode != 0:
                return "UNCLEAR", f"the final run failed: {again.stderr.strip().splitlines()[-1:]}"
            outcome, detail = check_store(root)
            return outcome, detail or f"{kills} kill moments ({landed} while a job ran), every finished store bit for bit"
        return run
    p.case(f"kill -9 at {RANDOM_KILLS} random moments", anywhere())


def concurrent_cases(p: Probe) -> None:
    def two_jobs():
        root = p.folder("two-jobs")
        procs = [popen_child(root, "--sleep", "0.25") for _ in range(2)]
        outs = [pr.communicate(timeout=120) for pr in procs]
        if any(pr.returncode != 0 for pr in procs):
            return "UNCLEAR", " | ".join(o[1].strip().splitlines()[-1] if o[1].strip() else "" for o in outs)
        calls = [json.loads(o[0].strip().splitlines()[-1])["calls"] for o in outs]
        outcome, detail = check_store(root)
        if outcome != "identical":
            return outcome, detail
        if sum(calls) != 6:
            return "WRONG", f"the two jobs computed {calls} shards (6 exist): work was duplicated"
        return "identical", f"shards computed per job {calls}, none twice"
    p.case("two jobs on one store at once", two_jobs)

    def three_jobs_one_killed():
        root = p.folder("three-jobs")
        procs = [popen_child(root, "--sleep", "0.25") for _ in range(3)]
        time.sleep(1.2)
        procs[0].send_signal(signal.SIGKILL)
        outs = [pr.communicate(timeout=120) for pr in procs[1:]]
        procs[0].wait()
        if any(pr.returncode != 0 for pr in procs[1:]):
            return "UNCLEAR", " | ".join(o[1][-200:] for o in outs)
        return check_store(root)
    p.case("three jobs, one killed while holding a shard", three_jobs_one_killed)


# -------------------------------------------------------------------------------- store: damage
def damage_cases(p: Probe) -> None:
    from utils import experiment as ex

    probe_families()
    n = 2000
    ds = text_dataset(n)
    ref = reference(ds)
    pristine = p.folder("pristine")
    ex.extract_embeddings(ds, {"text": "det:m"}, embeddings_dir=pristine, show_progress=False)
    store_folder(pristine)

    def flow(root: Path) -> np.ndarray:  # what a notebook does: extract (or reuse), then read every row
        return ex.extract_embeddings(ds, {"text": "det:m"}, embeddings_dir=root, show_progress=False).vectors["text"]

    def damaged(name: str, damage: Callable[[Path], None], expect_refusal: Optional[Sequence[str]] = None):
        def run():
            root = p.folder(f"damage-{name}")
            shutil.copytree(pristine, root, dirs_exist_ok=True)
            damage(store_folder(root))
            if expect_refusal is not None:
                from utils.store import StoreIntegrityError, StoreMismatchError

                return refused(lambda: flow(root), (StoreIntegrityError, StoreMismatchError), expect_refusal)
            with Warnings() as told:
                got = flow(root)
            if not np.array_equal(got, ref):
                return "WRONG", "vectors differ from the undamaged store"
            return "repaired", told.first().replace(str(root), "…")
        p.case(f"finished store: {name}", run)

    def rows(folder: Path, fn: Callable[[np.ndarray], None]) -> None:
        mm = np.load(folder / "vectors.npy", mmap_mode="r+")
        fn(mm)
        mm.flush()
        del mm

    def truncate(path: Path, keep: float = 0.6) -> None:
        data = path.read_bytes()
        path.write_bytes(data[: int(len(data) * keep)])

    damaged("100 rows set to zero", lambda f: rows(f, lambda m: m.__setitem__(slice(500, 600), 0.0)))
    damaged("one row set to NaN", lambda f: rows(f, lambda m: m.__setitem__(1234, np.nan)))
    damaged("1,000 rows reversed", lambda f: rows(f, lambda m: m.__setitem__(slice(300, 1300), np.array(m[300:1300][::-1]))))
    damaged("vectors.npy truncated", lambda f: truncate(f / "vectors.npy"))
    damaged("vectors.npy header garbled", lambda f: (f / "vectors.npy").write_bytes(b"\0" * 16 + (f / "vectors.npy").read_bytes()[16:]))
    damaged("vectors.npy deleted", lambda f: (f / "vectors.npy").unlink())
    damaged("ids.npy truncated", lambda f: truncate(f / "ids.npy"))
    damaged("ids.npy rows swapped", lambda f: np.save(f / "ids.npy", np.load(f / "ids.npy")[::-1]))
    damaged("manifest.json broken", lambda f: truncate(f / "manifest.json", 0.5),
            expect_refusal=["manifest.json", "overwrite=True"])
    damaged("manifest.json deleted", lambda f: (f / "manifest.json").unlink(), expect_refusal=["manifest.json", "overwrite=True"])

    # an unfinished store: shards 0..5 of 10 on disk, then one of them damaged
    partial = p.folder("partial")
    from utils.embed import embed

    class Stop(Det):
        def _encode(self, items, **kw):
            if self.calls >= 6:
                raise KeyboardInterrupt("simulated crash")
            return super()._encode(items, **kw)

    try:
        embed(ds, "text", Stop(), root=partial, shard_size=200, show_progress=False)
    except KeyboardInterrupt:
        pass

    def shard_damage(name: str, damage: Callable[[Path], None]):
        def run():
            root = p.folder(f"shard-{name}")
            shutil.copytree(partial, root, dirs_exist_ok=True)
            damage(store_folder(root) / "shards")
            with Warnings() as told:
                got = embed(ds, "text", Det(), root=root, shard_size=200, show_progress=False).aligned(ds.df["id"])
            if not np.array_equal(got, ref):
                return "WRONG", "vectors differ from an undamaged run"
            return "repaired", told.first().replace(str(root), "…")
        p.case(f"unfinished store: {name}", run)

    shard_damage("a shard overwritten with zeros", lambda d: np.save(d / "000002.npy", np.zeros((200, DIM), np.float32)))
    shard_damage("a shard truncated", lambda d: truncate(d / "000001.npy"))
    shard_damage("a shard with the wrong row count", lambda d: np.save(d / "000003.npy", np.zeros((150, DIM), np.float32)))
    shard_damage("a shard with the wrong width", lambda d: np.save(d / "000004.npy", np.zeros((200, DIM + 2), np.float32)))
    shard_damage("a shard's ids truncated", lambda d: truncate(d / "000000.ids.npy"))
    shard_damage("a broken failed.json", lambda d: (d / "000005.failed.json").write_text("{not json"))
    shard_damage("a shard's checksum record deleted", lambda d: (d / "000002.meta.json").unlink())
    shard_damage("a NaN row written into a shard", lambda d: _nan_into(d / "000001.npy"))


def _nan_into(path: Path) -> None:
    a = np.load(path)
    a[7] = np.nan
    np.save(path, a)


# --------------------------------------------------------------------------------- store: disk full
def space_cases(p: Probe) -> None:
    from utils.embed import embed
    from utils.store import StoreSpaceError

    ds = text_dataset(60)

    for stage in ("merge.block", "shard-write"):
        def injected(stage=stage):
            root = p.folder(f"enospc-{stage}")
            out = run_child(root, "--enospc", stage)
            text = out.stderr.strip().splitlines()[-1] if out.stderr.strip() else ""
            clear = out.returncode == 1 and "no space left on" in text and "free" in text and "MB" in text
            folder = store_folder(root)
            left = [p.name for p in folder.rglob("*.tmp")] + (
                [x.name for x in (folder / "locks").glob("*.lock")] if (folder / "locks").is_dir() else [])
            if not clear:
                return "UNCLEAR", text[-200:] or f"exit {out.returncode}"
            if left:
                return "WRONG", f"left behind {left}"
            again = run_child(root)
            if again.returncode != 0:
                return "UNCLEAR", again.stderr[-200:]
            outcome, detail = check_store(root)
            return ("refused" if outcome == "identical" else outcome), (text[:150] + "; then resumed identically"
                                                                       if outcome == "identical" else detail)
        p.case(f"disk full (ENOSPC injected at {stage})", injected)

    def precheck():
        import utils.store.files as files

        root = p.folder("space-precheck")
        real = files.free_bytes
        files.free_bytes = lambda path: 1000  # bytes
        try:
            return refused(lambda: embed(ds, "text", Det(), root=root, shard_size=10, show_progress=False),
                           (StoreSpaceError,), ["no space left on", "free", "MB"])
        finally:
            files.free_bytes = real
    p.case("too little free space (checked before writing)", precheck)

    def tmpfs():
        mnt = p.folder("tmpfs")
        if os.geteuid() != 0 or subprocess.run(["mount", "-t", "tmpfs", "-o", "size=400k", "tmpfs", str(mnt)],
                                               capture_output=True).returncode != 0:
            return "refused", "skipped: no permission to mount a tmpfs here (the injected cases cover ENOSPC)"
        try:
            big = text_dataset(6000)
            outcome = refused(lambda: embed(big, "text", Det(), root=mnt, shard_size=500, show_progress=False),
                              (StoreSpaceError,), ["no space left on", "tmpfs", "free", "MB"])
            if outcome[0] != "refused":
                return outcome
            folder = mnt / "probe" / "text" / "det_m"
            if list(folder.rglob("*.tmp")) or (folder / "locks").is_dir() and list((folder / "locks").glob("*.lock")):
                return "WRONG", "temporary or lock files left on the full disk"
            subprocess.run(["mount", "-o", "remount,size=8m", str(mnt)], check=True)
            got = embed(big, "text", Det(), root=mnt, shard_size=500, show_progress=False).aligned(big.df["id"])
            if not np.array_equal(got, reference(big)):
                return "WRONG", "vectors differ after freeing space and resuming"
            return "refused", outcome[1][:120] + "; resumed identically once space was freed"
        finally:
            subprocess.run(["umount", str(mnt)], capture_output=True)
    p.case("disk full (a 400 KB tmpfs)", tmpfs)


# ------------------------------------------------------------------------------------- fingerprint
def fingerprint_cases(p: Probe) -> None:
    from PIL import Image

    from utils.data import DatasetSpec, MultimodalDataset
    from utils.embed import embed

    def image_ds(root: Path):
        df = pd.DataFrame({"id": [f"i{k}" for k in range(6)], "image_path": [f"img/{k}.png" for k in range(6)],
                           "label": ["a", "b"] * 3, "split": ["train", "train", "val", "val", "test", "test"]})
        return MultimodalDataset(df, DatasetSpec("imgs", "binary", ["a", "b"], root=str(root), modalities=["image"]))

    def make(root: Path) -> None:
        (root / "img").mkdir(parents=True)
        for k in range(6):
            Image.fromarray(np.full((8, 8, 3), 40 * k, np.uint8)).save(root / f"img/{k}.png")

    def replaced(keep_time: bool, mode: str):
        def run():
            data, emb = p.folder(f"fp-data-{keep_time}-{mode}"), p.folder(f"fp-emb-{keep_time}-{mode}")
            make(data)
            embed(image_ds(data), "image", Bytes("b"), root=emb, show_progress=False, fingerprint=mode)
            victim = data / "img/3.png"
            st = victim.stat()
            other = (data / "img/4.png").read_bytes()
            new = (other + b"\0" * len(victim.read_bytes()))[: st.st_size]
            time.sleep(0.01)
            victim.write_bytes(new)  # same name, same size, other content
            if keep_time:
                os.utime(victim, ns=(st.st_atime_ns, st.st_mtime_ns))
            before = Bytes.rows
            got = embed(image_ds(data), "image", Bytes("b"), root=emb, show_progress=False, fingerprint=mode)
            computed = Bytes.rows - before
            clean = embed(image_ds(data), "image", Bytes("b"), root=p.folder(f"fp-clean-{keep_time}-{mode}"),
                          show_progress=False, fingerprint=mode)
            if not np.array_equal(got.aligned(image_ds(data).df["id"]), clean.aligned(image_ds(data).df["id"])):
                return "WRONG", "vectors differ from a clean run on the changed files"
            if computed != 1:
                return "WRONG", f"{computed} rows computed again, expected the 1 replaced image"
            return "identical", "the replaced image computed again (1 of 6 rows), the others reused by id; bit for bit a clean run"
        return run
    p.case("same-size image replaced in place (fingerprint by stat)", replaced(False, "stat"))
    p.case("same-size image replaced, time set back (fingerprint by content)", replaced(True, "content"))

    def copied():
        data, emb = p.folder("fp-copy-data"), p.folder("fp-copy-emb")
        make(data)
        first = embed(image_ds(data), "image", Bytes("b"), root=emb, show_progress=False, fingerprint="content")
        ref = first.aligned(["i0", "i5"])
        copy = p.work / "fp-copy-elsewhere"
        shutil.rmtree(copy, ignore_errors=True)
        shutil.copytree(data, copy, copy_function=shutil.copyfile)  # new modification times
        for f in (copy / "img").iterdir():
            os.utime(f, (1e9, 1e9))
        again = embed(image_ds(copy), "image", Bytes("b"), root=emb, show_progress=False, fingerprint="content")
        if not again.reused or not np.array_equal(again.aligned(["i0", "i5"]), ref):
            return "WRONG", "the copy was not recognised as the same inputs"
        return "identical", "reused after copying with new file times"
    p.case("dataset copied elsewhere (fingerprint by content)", copied)

    def reuse(how: str):
        """A finished store, asked for by another shard_size, order, subset, superset or an edited table: the
        vectors must be a clean run's, bit for bit, and only new or changed rows computed."""
        def run():
            from utils.embed import embed as embed_store

            full = text_dataset(120)
            emb = p.folder(f"reuse-{how}")
            embed_store(full, "text", Det("m"), root=emb, shard_size=25, show_progress=False)
            shard, expect = 25, 0
            if how == "shard_size":
                ds, shard = full, 40
            elif how == "order":
                ds = full.take(np.random.default_rng(3).permutation(120))
            elif how == "subset":
                ds = full.take(np.arange(7, 120, 5))
            elif how == "superset":
                ds, expect = text_dataset(150), 30
            else:  # edited: three texts changed
                ds, expect = text_dataset(120), 3
                ds.df.loc[[5, 60, 119], "text"] = ["edited a", "edited b", "edited c"]
            ext = Det("m")
            got = embed_store(ds, "text", ext, root=emb, shard_size=shard, show_progress=False)
            vectors = got.aligned(ds.df["id"], verify="full")
            if not np.array_equal(vectors, reference(ds)):
                return "WRONG", "vectors differ from a clean run"
            if ext.rows != expect:
                return "WRONG", f"{ext.rows} rows computed, expected {expect}"
            return "identical", f"reused by id, {expect} row(s) computed, bit for bit a clean run"
        return run
    for how in ("shard_size", "order", "subset", "superset", "edited"):
        p.case(f"store reused for another {how}" if how in ("shard_size", "order") else f"store reused for a {how}"
               if how in ("subset", "superset") else "store reused for an edited table (3 texts)", reuse(how))


def one_thread() -> None:
    """Tiny models on one thread: on a shared 2-core machine OpenMP threads spin-wait each other (a 64-row batch
    norm took 50 ms instead of 0.05)."""
    import torch

    torch.set_num_threads(1)


# ---------------------------------------------------------------------------------- bad images
def image_cases(p: Probe) -> None:
    from PIL import Image

    one_thread()
    from utils import extractors
    from utils.extractors.base import MediaError

    folder = p.folder("images")
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, (48, 64, 3), dtype=np.uint8)
    grad8 = np.tile(np.linspace(0, 255, 64), (48, 1)).astype(np.uint8)
    Image.fromarray(rgb).save(folder / "rgb.png")
    Image.fromarray(grad8).convert("RGB").save(folder / "grad8.png")
    ext = extractors.create("timm:test_vit", pretrained=False)
    enc = lambda paths: ext.encode([str(x) for x in paths], show_progress=False)  # noqa: E731
    base = enc([folder / "rgb.png", folder / "grad8.png"])

    def cos(a, b):
        return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))

    def same(path: Path, want: np.ndarray, tol: float = 0.0, label: str = "") -> Tuple[str, str]:
        got = enc([path])[0]
        if tol == 0.0 and np.array_equal(got, want):
            return "identical", label
        c = cos(got, want)
        if tol and c >= 1 - tol:
            return "identical", f"cosine {c:.4f} with the correct decoding{'; ' + label if label else ''}"
        return "WRONG", f"cosine {c:.4f} with the correct decoding"

    def renamed():
        shutil.copyfile(folder / "rgb.png", folder / "renamed.jpg")
        return same(folder / "renamed.jpg", base[0], label="PNG bytes named .jpg")
    p.case("image: PNG renamed .jpg", renamed)

    def rgba_opaque():
        Image.fromarray(rgb).convert("RGBA").save(folder / "rgba.png")
        return same(folder / "rgba.png", base[0])
    p.case("image: RGBA (opaque)", rgba_opaque)

    def rgba_transparent():
        a = np.dstack([rgb, np.where(np.arange(64) < 32, 0, 255)[None, :].repeat(48, 0).astype(np.uint8)])
        Image.fromarray(a, "RGBA").save(folder / "rgba_t.png")
        white = rgb.copy()
        white[:, :32] = 255
        Image.fromarray(white).save(folder / "rgba_t_ref.png")
        return same(folder / "rgba_t.png", enc([folder / "rgba_t_ref.png"])[0], label="transparent half composited on white")
    p.case("image: RGBA (half transparent)", rgba_transparent)

    def grey():
        Image.fromarray(grad8).save(folder / "grey.png")  # mode L
        return same(folder / "grey.png", base[1])
    p.case("image: L (8-bit grey)", grey)

    def palette():
        im = Image.fromarray(rgb).quantize(64)
        im.save(folder / "p.png")
        return same(folder / "p.png", enc_pil(ext, im.convert("RGB"), folder / "p_ref.png"))
    p.case("image: P (palette)", palette)

    def cmyk():
        Image.fromarray(rgb).convert("CMYK").save(folder / "cmyk.tif")
        return same(folder / "cmyk.tif", base[0], tol=1e-3)
    p.case("image: CMYK (TIFF)", cmyk)

    def sixteen():
        g16 = (np.tile(np.linspace(0, 65535, 64), (48, 1))).astype(np.uint16)
        Image.fromarray(g16).save(folder / "g16.png")
        white = enc_pil(ext, Image.new("RGB", (64, 48), (255, 255, 255)), folder / "white.png")
        got = enc([folder / "g16.png"])[0]
        if cos(got, white) > 0.999 and cos(got, base[1]) < 0.999:
            return "WRONG", "the 16-bit gradient looks like a white image"
        return same(folder / "g16.png", base[1], tol=1e-3, label=f"cosine {cos(got, white):.3f} with a white image")
    p.case("image: 16-bit grey (I;16 gradient)", sixteen)

    def twelve():
        g12 = (np.tile(np.linspace(0, 4095, 64), (48, 1))).astype(np.uint16)
        Image.fromarray(g12).save(folder / "g12.png")
        return same(folder / "g12.png", base[1], tol=1e-3, label="12-bit values in a 16-bit file")
    p.case("image: 12-bit grey stored in 16 bits", twelve)

    def floats():
        Image.fromarray(np.tile(np.linspace(0, 1, 64), (48, 1)).astype(np.float32)).save(folder / "f.tif")
        return same(folder / "f.tif", base[1], tol=1e-3)
    p.case("image: float32 grey in [0, 1] (TIFF)", floats)

    def unreadable(name: str, make: Callable[[Path], None]):
        def run():
            path = folder / name
            make(path)
            items = [str(folder / "rgb.png"), str(path)]
            outcome = refused(lambda: ext.encode(items, show_progress=False), (MediaError,), ["row 1", name])
            out = ext.encode(items, show_progress=False, on_error="skip")
            if list(ext.last_failures) != [1] or not np.isnan(out[1]).all():
                return "WRONG", "on_error='skip' did not record the row as failed"
            return outcome
        p.case(f"image: {name}", run)

    unreadable("truncated.png", lambda q: q.write_bytes((folder / "rgb.png").read_bytes()[:300]))
    unreadable("truncated.jpg", lambda q: (Image.fromarray(rgb).save(q.with_suffix(".full.jpg")),
                                          q.write_bytes(q.with_suffix(".full.jpg").read_bytes()[:400])))
    unreadable("zero-byte.png", lambda q: q.write_bytes(b""))
    unreadable("bomb.png", _write_bomb_png)
    unreadable("a-folder.png", lambda q: q.mkdir())

    def sideways():
        """A phone photo taken sideways: the sensor's pixels stored 64 x 48 with EXIF orientation 6 (viewers turn
        it 90 degrees clockwise). Its vector must be that of the upright image (the same pixels, turned)."""
        exif = Image.Exif()
        exif[0x0112] = 6
        Image.fromarray(rgb).save(folder / "phone.jpg", quality=95, exif=exif.tobytes())
        with Image.open(folder / "phone.jpg") as im:
            stored = im.convert("RGB")  # the pixels as stored, no EXIF applied
        stored.transpose(Image.Transpose.ROTATE_270).save(folder / "phone_upright.png")  # turned by hand
        stored.save(folder / "phone_stored.png")
        got, upright, unturned = enc([folder / "phone.jpg", folder / "phone_upright.png", folder / "phone_stored.png"])
        if not np.array_equal(got, upright):
            return "WRONG", f"cosine {cos(got, upright):.4f} with the upright image"
        return "identical", f"the upright image's vector (cosine {cos(got, unturned):.3f} with the pixels as stored)"
    p.case("image: EXIF orientation 6 (a phone photo taken sideways)", sideways)

    def animated():
        frames = [Image.fromarray(np.roll(rgb, 8 * k, axis=1)) for k in range(4)]
        frames[0].save(folder / "anim.gif", save_all=True, append_images=frames[1:], duration=80, loop=0)
        with Image.open(folder / "anim.gif") as im:
            im.convert("RGB").save(folder / "anim_first.png")  # the first frame as the GIF stores it
        with Warnings() as told:
            got, first = enc([folder / "anim.gif", folder / "anim_first.png"])
        if not np.array_equal(got, first):
            return "WRONG", f"cosine {cos(got, first):.4f} with the first frame"
        said = [w for w in told.lines if "animated" in w and "first frame" in w and "anim.gif" in w]
        return ("identical", said[0]) if said else ("WRONG", "the first frame was used without a word")
    p.case("image: animated GIF (4 frames)", animated)

    def big():
        Image.fromarray(np.tile(rgb, (60, 60, 1))).save(folder / "big.jpg", quality=80)  # 3840 x 2880
        got = enc([folder / "big.jpg"])[0]
        return ("identical", "12-megapixel JPEG embedded") if np.isfinite(got).all() else ("WRONG", "NaN vector")
    p.case("image: 12-megapixel JPEG", big)


def enc_pil(ext, im, path: Path) -> np.ndarray:
    im.save(path)
    return ext.encode([str(path)], show_progress=False)[0]


def _write_bomb_png(path: Path) -> None:
    """A tiny PNG whose header claims 20,000 x 20,000 pixels (Pillow refuses it before decoding)."""
    import struct
    import zlib

    buf = io.BytesIO()
    from PIL import Image

    Image.new("L", (1, 1)).save(buf, format="PNG")
    data = bytearray(buf.getvalue())
    ihdr = 8 + 8
    data[ihdr : ihdr + 8] = struct.pack(">II", 20000, 20000)
    crc = zlib.crc32(bytes(data[12 : ihdr + 13]))
    data[ihdr + 13 : ihdr + 17] = struct.pack(">I", crc)
    path.write_bytes(bytes(data))


# ------------------------------------------------------------------------------------- bad tables
def table_cases(p: Probe) -> None:
    from utils import data
    from utils import experiment as ex
    from utils.data import DatasetError

    one_thread()
    def write(name: str, text: str, encoding: str = "utf-8") -> Path:
        folder = p.folder(f"table-{name}")
        (folder / "records.csv").write_bytes(text.encode(encoding))
        return folder

    base = "id,text,label,split\n" + "".join(f"r{i},text {i},{'ab'[i % 2]},{['train', 'train', 'val', 'test'][i % 4]}\n"
                                            for i in range(40))

    def load(folder: Path, **kw):
        return data.load("table", root=folder, text_column="text", image_column=None, split_column="split",
                         id_column="id", **kw)

    def latin1():
        folder = write("latin1", base + "r99,caf\u00e9 cr\u00e8me,a,train\n", "latin-1")
        try:
            ds = load(folder)
        except DatasetError as e:
            error = e

            def again() -> None:
                raise error
            return refused(again, (DatasetError,), ["records.csv"])
        got = ds.df.loc[ds.df["id"] == "r99", "text"].tolist()
        return ("identical", "decoded as latin-1") if got == ["caf\u00e9 cr\u00e8me"] else ("WRONG", f"read as {got!r}")
    p.case("table: latin-1 CSV", latin1)

    def texts():
        folder = write("texts", "id,text,label,split\nr0,,a,train\nr1,hello,b,train\nr2,\"" + "word " * 20000
                       + "\",a,val\nr3,  ,b,test\n")
        ds = load(folder)
        from utils import extractors

        ext = extractors.create("minilm-offline")
        got = ext.encode(ds.items("text"), show_progress=False)
        want = ext.encode(["", "hello", "word " * 20000, "  "], show_progress=False)
        if not np.isfinite(got).all():
            return "WRONG", "NaN vectors"
        return ("identical", "empty, NaN and 100,000-character texts embedded") if np.allclose(got, want, atol=1e-5) \
            else ("WRONG", "texts changed on the way")
    p.case("table: empty, missing and 100,000-character texts", texts)

    def skipped(folder: Path, bad_id: str, needles: Sequence[str], **kw) -> Tuple[str, str]:
        """A malformed line is left out and reported with its line number (strict=True raises instead)."""
        ds = load(folder, **kw)
        rep = ds.spec.extra.get("load_report")
        where = rep.where("skipped") if rep is not None else []
        text = "; ".join(f"{r}: {n}" for r, n in rep.counts("skipped").items()) if rep is not None else ""
        if (ds.df["text"] == "again").any() or bad_id in set(ds.df["id"]) and bad_id != "r3":
            return "WRONG", "the malformed line was loaded"
        if not where or "records.csv:42" not in where or not all(n.lower() in text.lower() for n in needles):
            return "UNCLEAR", f"skipped without saying where or why: {where} {text}"
        strict = refused(lambda: load(folder, strict=True, **kw), (DatasetError,), ["records.csv:42"])
        if strict[0] != "refused":
            return strict
        return "refused", f"line 42 skipped and reported ({text}); strict=True raises"

    p.case("table: NaN label", lambda: skipped(write("nanlabel", base + "r99,x,,train\n"), "r99", ["label"]))
    p.case("table: unknown label", lambda: skipped(write("unknown", base + "r99,x,zzz,train\n"), "r99", ["label"],
                                                   classes=["a", "b"]))
    p.case("table: duplicate ids", lambda: skipped(write("dup", base + "r3,again,a,train\n"), "r3", ["one id"]))

    def escaping(value: str):
        def run():
            folder = p.folder(f"escape-{abs(hash(value))}")
            (folder / "records.csv").write_text("id,text,image,label,split\n" + "".join(
                f"r{i},t,{value if i == 5 else 'img/x.png'},{'ab'[i % 2]},{['train', 'val', 'test'][i % 3]}\n"
                for i in range(12)))
            (folder / "img").mkdir()
            (folder / "img/x.png").write_bytes((p.work / "images/rgb.png").read_bytes())
            return refused(lambda: data.load("table", root=folder, split_column="split", id_column="id"),
                           (DatasetError,), ["row 5", "outside the dataset root", "allow_absolute_paths"])
        return run
    p.case("table: image path /etc/passwd", escaping("/etc/passwd"))
    p.case("table: image path ../../../../somewhere/x.png", escaping("../../../../somewhere/x.png"))

    def media(name: str, plant: Callable[[Path, Path], str], needles: Sequence[str]):
        """Row 5 of a table names what ``plant(data folder, a folder outside it)`` made: a clear refusal at load
        naming the row (and what is wrong), before anything is embedded."""
        def run():
            folder, outside = p.folder(f"media-{name}"), p.folder(f"media-{name}-outside")
            (folder / "img").mkdir()
            shutil.copyfile(p.work / "images/rgb.png", folder / "img/x.png")
            shutil.copyfile(p.work / "images/rgb.png", outside / "secret.png")
            value = plant(folder, outside)
            (folder / "records.csv").write_text("id,text,image,label,split\n" + "".join(
                f"r{i},t,{value if i == 5 else 'img/x.png'},{'ab'[i % 2]},{['train', 'val', 'test'][i % 3]}\n"
                for i in range(12)))
            return refused(lambda: data.load("table", root=folder, split_column="split", id_column="id"),
                           (DatasetError,), ["row 5", *needles])
        return run

    def link_file(folder: Path, outside: Path) -> str:
        os.symlink(outside / "secret.png", folder / "img/link.png")
        return "img/link.png"

    def link_folder(folder: Path, outside: Path) -> str:
        os.symlink(outside, folder / "img/more")
        return "img/more/secret.png"

    p.case("table: image is a symbolic link out of the data folder",
           media("link-file", link_file, ["symbolic link", "secret.png", "allow_absolute_paths"]))
    p.case("table: a folder on the image's path links out of the data folder",
           media("link-folder", link_folder, ["symbolic link", "secret.png", "allow_absolute_paths"]))
    p.case("table: image is a folder", media("folder", lambda f, o: (f / "img/sub.png").mkdir() or "img/sub.png",
                                             ["is a folder, not a file", "on_missing_image='drop'"]))
    p.case("table: image is a 0-byte file",
           media("empty", lambda f, o: (f / "img/e.png").write_bytes(b"") or "img/e.png", ["is empty (0 bytes)"]))

    one_class = "id,text,label,split\n" + "".join(f"r{i},text {i},a,{['train', 'val', 'test'][i % 3]}\n" for i in range(30))

    def one_class_case():
        folder = write("oneclass", one_class)
        emb = p.folder("oneclass-emb")
        ds = load(folder)
        outcome = refused(lambda: ex.extract_embeddings(ds, {"text": "det:m"}, embeddings_dir=emb, show_progress=False),
                          (DatasetError,), ["class", "training rows"])
        if any(emb.rglob("*.npy")):
            return "WRONG", "extraction ran before the refusal"
        return outcome
    p.case("table: every row one class", one_class_case)

    no_val = "id,text,label,split\n" + "".join(f"r{i},text {i},{'ab'[i % 2]},{['train', 'test'][i % 2 * 0 + (i % 3 == 0)]}\n"
                                                for i in range(30))
    p.case("table: no validation split, carve_val=False",
           lambda: refused(lambda: load(write("noval", no_val), carve_val=False), (DatasetError,), ["validation"]))

    def no_val_carved():
        ds = load(write("noval2", no_val))
        n_val = int((ds.df["split"] == "val").sum())
        return ("identical", f"{n_val} training rows carved as validation") if n_val else ("WRONG", "no val rows")
    p.case("table: no validation split, default", no_val_carved)


# ---------------------------------------------------------------------------------------- texts
AWKWARD_TEXTS = {  # kind -> text; "plain" is the reference the NUL case must equal
    "plain": "the cat sat on the red mat",
    "empty": "",
    "whitespace only": " \t\n   ",
    "NUL bytes": "the cat\x00 sat on the red\x00 mat",
    "NUL only": "\x00\x00",
    "100,000 characters": "the cat sat " * 8334,
    "only emoji": "\U0001F600\U0001F680\U0001F525\U0001F44D",
}


def text_cases(p: Probe) -> None:
    """Awkward texts through every text family that runs offline (hf with the packaged all-MiniLM-L6-v2 and with
    a tiny BERT whose tokenizer was saved without a length limit, CLIP's text tower, llama.cpp with a tiny GGUF,
    the OpenAI family against a local server that rejects empty inputs as the real API does). Each must embed
    sanely: finite vectors; empty, whitespace-only and NUL-only texts blank in the table (heads then use the
    training-mean stand-in); NUL bytes dropped (the vector of the text without them); a 100,000-character text
    truncated, not blanked; emoji-only embedded (a warning where the vocabulary cannot spell it)."""
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    from utils import extractors
    from utils.data import DatasetSpec, MultimodalDataset

    sys.path.insert(0, str(REPO))
    from tests.conftest import make_tiny_bert
    from tests.tiny_models import make_clip, write_tiny_gguf

    one_thread()
    sent: List[str] = []

    class Server(BaseHTTPRequestHandler):
        def log_message(self, *a):
            pass

        def do_POST(self):
            body = json.loads(self.rfile.read(int(self.headers["content-length"])))
            sent.extend(body["input"])
            if any(t == "" for t in body["input"]):  # the real API refuses empty strings
                payload, status = {"error": {"message": "'$.input' is invalid: empty string"}}, 400
            else:
                payload, status = {"object": "list", "model": body["model"], "usage": {"prompt_tokens": 1, "total_tokens": 1},
                                   "data": [{"object": "embedding", "index": i, "embedding": vector_of(t).tolist()}
                                            for i, t in enumerate(body["input"])]}, 200
            raw = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(raw)))
            self.end_headers()
            self.wfile.write(raw)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Server)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    os.environ.setdefault("OPENAI_API_KEY", "sk-probe-texts")
    models = p.folder("text-models")
    families = {
        "hf (all-MiniLM-L6-v2)": lambda: extractors.create("minilm-offline"),
        "hf (tiny BERT, no length limit saved)": lambda: extractors.create(f"hf:{make_tiny_bert(models / 'bert')}"),
        "clip (text tower)": lambda: extractors.create(f"clip:{make_clip(models / 'clip')}", modality="text"),
        "llama.cpp (tiny GGUF)": lambda: extractors.create(f"llamacpp:{write_tiny_gguf(models / 'tiny.gguf')}"),
        "openai (local server)": lambda: extractors.create(
            "openai:my-model", base_url=f"http://127.0.0.1:{server.server_address[1]}/v1", backoff=0.0, max_retries=1),
    }
    kinds = list(AWKWARD_TEXTS)
    df = pd.DataFrame({"id": [f"t{i}" for i in range(len(kinds))], "text": list(AWKWARD_TEXTS.values()),
                       "label": ["a", "b"] * (len(kinds) // 2) + ["a"] * (len(kinds) % 2), "split": "train"})
    blank = dict(zip(kinds, MultimodalDataset(df, DatasetSpec("texts", "binary", ["a", "b"], modalities=["text"])).empty("text")))
    try:
        for family, make in families.items():
            got: Dict[str, Any] = {}
            try:
                with Warnings() as told:
                    out = make().encode(list(AWKWARD_TEXTS.values()), batch_size=3, show_progress=False)
                got = dict(zip(kinds, out))
            except Exception as e:  # noqa: BLE001 -- every case of this family reports it
                failure = f"{type(e).__name__}: {str(e)[:200]}"
            else:
                failure = ""

            def check(kind: str, got=got, failure=failure, told=told, family=family) -> Tuple[str, str]:
                if failure:
                    return "UNCLEAR", failure
                v = got[kind]
                if not np.isfinite(v).all():
                    return "WRONG", "a non-finite vector"
                if kind in ("empty", "whitespace only", "NUL only"):
                    if not blank[kind]:
                        return "WRONG", "the table does not count it as blank (heads would trust its vector)"
                    if family.startswith("openai") and "" in sent:
                        return "WRONG", "an empty string was sent to the API (it refuses them)"
                    return "identical", "embedded; blank in the table, so heads use the training-mean stand-in"
                if kind == "NUL bytes":
                    if any("\x00" in t for t in sent):
                        return "WRONG", "NUL bytes reached the server"
                    return (("identical", "the vector of the text without its NUL bytes")
                            if np.allclose(v, got["plain"], rtol=1e-4, atol=1e-5) else ("WRONG", "differs from the text without NUL bytes"))
                if kind == "100,000 characters":
                    if np.array_equal(v, got["empty"]):
                        return "WRONG", "embedded as if blank"
                    cut = [w for w in told.lines if "truncated" in w]
                    return ("reported", cut[0]) if cut else ("identical", "truncated to the model's length limit")
                if kind == "only emoji":
                    unk = [w for w in told.lines if "does not know" in w]
                    return ("reported", unk[0]) if unk else ("identical", "embedded")
                return "identical", ""

            for kind in kinds[1:]:
                p.case(f"text: {kind}, {family}", lambda kind=kind, check=check: check(kind))
    finally:
        server.shutdown()


# ------------------------------------------------------------------------------------ training
def training_cases(p: Probe) -> None:
    """Edge cases of training and scoring: sane numbers with honest intervals (wide, or marked), or a refusal."""
    from utils import experiment as ex
    from utils.data import DatasetSpec, MultimodalDataset

    one_thread()
    rng = np.random.default_rng(0)

    def dataset(labels, splits, task, classes):
        n = len(labels)
        df = pd.DataFrame({"id": [f"r{i:05d}" for i in range(n)], "text": ["x"] * n, "image_path": ["x.png"] * n,
                           "label": labels, "split": splits})
        return MultimodalDataset(df, DatasetSpec("edge", task, classes))

    def train(ds, text, image=None, heads=("text_only", "early_fusion")):
        image = rng.normal(size=(len(ds), 4)).astype(np.float32) if image is None else image
        emb = ex.Embeddings({"text": text, "image": image}, {"text": "t", "image": "i"}, ids=ds.df["id"])
        with Warnings() as told:
            rows = ex.train_heads(ds, emb, list(heads), epochs=4, seeds=[0, 1], show_progress=False)
            rep = ex.report(rows, shapley=False, figures=False)
        return rows, rep, told.lines

    def identical():
        ds = dataset(["a", "b"] * 60, (["train"] * 6 + ["val"] * 2 + ["test"] * 2) * 12, "binary", ["a", "b"])
        rows, rep, told = train(ds, np.ones((120, 6), np.float32), np.full((120, 4), 0.25, np.float32))
        warned = [w for w in told if "identical in every training row" in w]
        quiet = [r["model"] for r in rows if "constant guess" not in str(r.get("interval_note"))]
        if not warned or quiet:
            return "WRONG", f"rows {quiet} scored without saying the head could only guess" if quiet else "no warning"
        return "reported", warned[0]
    p.case("training: all-identical embeddings", identical)

    def one_val_per_class():
        labels = ["a", "b", "c"] * 30
        ds = dataset(labels, ["train"] * 75 + ["val"] * 3 + ["test"] * 12, "multiclass", ["a", "b", "c"])
        text = (rng.normal(size=(90, 6)) + 2 * np.eye(3, 6)[ds.labels()]).astype(np.float32)
        rows, rep, told = train(ds, text)
        warned = [w for w in told if "validation split holds few rows" in w]
        fitted = rep.calibration["temperature"].notna().any()
        if not warned or fitted:
            return "WRONG", "a temperature fitted on 3 validation rows" if fitted else "no warning"
        wide = min(r["macro_f1_ci_high"] - r["macro_f1_ci_low"] for r in rows)
        return "reported", (f"warned (1 validation row of each class); no temperature fitted, a report note says why; "
                            f"narrowest macro-F1 interval {wide:.2f} wide")
    p.case("training: one validation row per class", one_val_per_class)

    def multilabel_empty():
        from sklearn.metrics import f1_score

        base = [["a"], ["b"], ["a", "b"], []]
        ds = dataset(base * 30, (["train"] * 6 + ["val"] * 2 + ["test"] * 2) * 12, "multilabel", ["a", "b"])
        y = ds.labels()
        text = (rng.normal(size=(120, 6)) + 2 * np.pad(y, ((0, 0), (0, 4)))).astype(np.float32)
        rows, rep, told = train(ds, text)
        test = ds.split_mask("test")
        for i, r in enumerate(rows):
            pred = (np.asarray(rows.outputs[i].test_proba) >= 0.5).astype(int)
            want = f1_score(y[test], pred, average="macro", zero_division=0)
            acc = float((pred == y[test]).all(axis=1).mean())
            if abs(r["macro_f1"] - want) > 1e-9 or abs(r["accuracy"] - acc) > 1e-9:
                return "WRONG", f"{r['model']}: macro-F1 {r['macro_f1']:.4f} / accuracy {r['accuracy']:.4f}, by hand {want:.4f} / {acc:.4f}"
        n_empty = int((y[test].sum(axis=1) == 0).sum())
        return "identical", f"{n_empty} test rows without a label scored as negatives of every class (equal to sklearn by hand)"
    p.case("training: multilabel rows with no label", multilabel_empty)

    def multilabel_blank_cell():
        from utils import data as data_mod
        from utils.data.quirks import report_of

        folder = p.folder("multilabel-blank")
        lines = [f"r{i},text {i},{['a', 'b', 'a;b'][i % 3] if i != 7 else ''},{['train', 'train', 'val', 'test'][i % 4]}"
                 for i in range(40)]
        (folder / "records.csv").write_text("id,text,label,split\n" + "\n".join(lines) + "\n")
        ds = data_mod.load("table", root=folder, id_column="id", image_column=None, task="multilabel", label_sep=";")
        rep = report_of(ds)
        where = rep.where("skipped") if rep is not None else []
        if "r7" in set(ds.df["id"]) and not where:
            return "WRONG", "the row with a blank label cell was loaded without a word"
        return "reported", f"skipped and reported at {where[0]} (a blank cell may be a missing label, not 'no label')"
    p.case("training: a multilabel table row with a blank label cell", multilabel_blank_cell)

    def rare_positive():
        n = 3000
        labels = np.where(rng.random(n) < 0.01, "pos", "neg")
        ds = dataset(labels.tolist(), rng.choice(["train", "val", "test"], n, p=[0.6, 0.2, 0.2]).tolist(), "binary",
                     ["neg", "pos"])
        y = ds.labels()
        text = (rng.normal(size=(n, 6)) + 1.0 * np.eye(2, 6)[y]).astype(np.float32)
        rows, rep, told = train(ds, text)
        n_pos = int(y[ds.split_mask("test")].sum())
        for r in rows:
            note, width = str(r.get("interval_note") or ""), r["roc_auc_ci_high"] - r["roc_auc_ci_low"]
            if n_pos < 10 and "too small" not in note:
                return "WRONG", f"{r['model']}: {n_pos} test positives and no note"
            if width < 0.05 and not note:
                return "WRONG", f"{r['model']}: AUC interval {width:.3f} wide on {n_pos} positives, no note"
        widths = [r["roc_auc_ci_high"] - r["roc_auc_ci_low"] for r in rows]
        return "reported", f"{n_pos} test positives: every row noted, AUC intervals {min(widths):.2f}-{max(widths):.2f} wide"
    p.case("training: 1% positives (binary)", rare_positive)


# ------------------------------------------------------------------------------------ parameters
def parameter_cases(p: Probe) -> None:
    from utils.__main__ import main

    def cli(args: List[str], needles: Sequence[str]):
        def run():
            err = io.StringIO()
            t0 = time.perf_counter()
            old = sys.stderr
            sys.stderr = err
            try:
                try:
                    code = main(args + ["--data-dir", str(p.work / "cli-data"), "--embeddings-dir",
                                        str(p.work / "cli-emb"), "--results-dir", str(p.work / "cli-res")])
                except SystemExit as e:
                    code, text = 2, str(e.code)
                else:
                    text = err.getvalue()
            finally:
                sys.stderr = old
            took = time.perf_counter() - t0
            if code == 0:
                return "WRONG", "accepted"
            ok = all(n.lower() in text.lower() for n in needles) and "Traceback" not in text
            if (p.work / "cli-emb").exists() and any((p.work / "cli-emb").rglob("*.npy")):
                return "WRONG", "extraction ran before the refusal"
            return ("refused" if ok else "UNCLEAR"), f"{text.strip()[:150]} ({took:.1f} s)"
        return run

    p.case("cli: --epochs -1", cli(["--epochs", "-1"], ["--epochs", ">= 1"]))
    p.case("cli: --batch-size 1", cli(["--batch-size", "1"], ["--batch-size", ">= 2"]))
    p.case("cli: --seeds a,b", cli(["--seeds", "a,b"], ["--seeds", "integers"]))
    p.case("cli: bad JSON options", cli(["--dataset-options", "{n: 3}"], ["--dataset-options", "JSON"]))
    p.case("cli: unknown loader option", cli(["--dataset-options", '{"nn": 30}'], ["nn", "did you mean", "accepts"]))
    p.case("cli: unknown extractor option", cli(["--image-options", '{"precision": "int8"}'], ["precision", "fp32"]))
    p.case("cli: unknown dataset", cli(["--dataset", "nosuch"], ["nosuch", "synthetic"]))


# ----------------------------------------------------------------------------------------- OpenAI
def openai_cases(p: Probe) -> None:
    import base64
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    from utils import extractors
    from utils.extractors.base import ExtractorError

    key = "sk-probe-SECRET-abc123"
    state: Dict[str, Any] = {"mode": "ok"}

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *a):
            pass

        def do_POST(self):
            body = json.loads(self.rfile.read(int(self.headers["content-length"])))
            mode = state["mode"]
            if mode in ("echo400", "echo500"):
                payload = json.dumps({"error": {"message": f"bad request; headers were Authorization: "
                                                           f"{self.headers.get('authorization')}", "type": "x"}}).encode()
                self.send_response(400 if mode == "echo400" else 500)
                self.send_header("retry-after", "0")
            else:
                widths = {"ok": [8] * len(body["input"]), "narrow": [8] * len(body["input"]),
                          "ragged": [8 if i % 2 else 5 for i in range(len(body["input"]))]}[mode]
                data = [{"object": "embedding", "index": i,
                         "embedding": base64.b64encode(np.ones(w, "<f4").tobytes()).decode()
                         if body.get("encoding_format") == "base64" else [1.0] * w} for i, w in enumerate(widths)]
                payload = json.dumps({"object": "list", "data": data, "model": body["model"],
                                      "usage": {"prompt_tokens": 1, "total_tokens": 1}}).encode()
                self.send_response(200)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}/v1"
    os.environ["OPENAI_API_KEY"] = key
    try:
        def run(mode: str, needles: Sequence[str], **kw):
            def case():
                state["mode"] = mode
                ext = extractors.create(kw.pop("spec", "openai:text-embedding-3-small"), base_url=url, backoff=0.0,
                                        max_retries=1, **kw)
                logs = io.StringIO()
                handler = logging.StreamHandler(logs)
                logging.getLogger("utils").addHandler(handler)
                try:
                    outcome = refused(lambda: ext.encode(["a", "b", "c"], show_progress=False), (ExtractorError,),
                                      needles, forbidden=[key])
                finally:
                    logging.getLogger("utils").removeHandler(handler)
                if key in logs.getvalue():
                    return "WRONG", "the API key appears in the log"
                return outcome
            return case

        p.case("openai: 8-d answer when dimensions=256", run("narrow", ["8-d", "256"], dimensions=256))
        p.case("openai: 8-d answer for a 1536-d model", run("narrow", ["8-d", "1536"]))
        p.case("openai: answers of mixed widths", run("ragged", ["different widths"], spec="openai:my-model"))
        p.case("openai: error body echoing the Authorization header (400)", run("echo400", ["HTTP 400"]))
        p.case("openai: error body echoing the Authorization header (500)", run("echo500", ["giving up"]))

        def credentials():
            state["mode"] = "ok"
            secret_url = url.replace("http://", "http://alice:hunter2pass@") + "?api-key=qk-999"
            ext = extractors.create("openai:my-model", base_url=secret_url)
            shown = json.dumps(ext.config()) + repr(ext) + ext.slug + ext.describe()
            leaks = [s for s in ("hunter2pass", "qk-999", "alice") if s in shown]
            return ("WRONG", f"{leaks} visible in manifest/repr") if leaks else ("identical", "credentials redacted")
        p.case("openai: base_url with user:password@ and a key in the query", credentials)
    finally:
        server.shutdown()
        os.environ.pop("OPENAI_API_KEY", None)


# ---------------------------------------------------------------------------------------- archives
def archive_cases(p: Probe) -> None:
    import tarfile
    import zipfile

    from utils.data import download as dl

    def tar(name: str, links: List[Tuple[str, str]]):
        def run():
            folder = p.folder(f"tar-{name}")
            path = folder / "a.tar"
            with tarfile.open(path, "w") as t:
                for member, target in links:
                    info = tarfile.TarInfo(member)
                    info.type, info.linkname = tarfile.SYMTYPE, target
                    t.addfile(info)
            outcome = refused(lambda: dl.extract(path, folder / "out"), (dl.DownloadError,), ["unsafe archive member"])
            if (folder / "out").exists() and any((folder / "out").iterdir()):
                return "WRONG", f"wrote {[x.name for x in (folder / 'out').iterdir()]}"
            return outcome
        return run
    p.case("archive: tar link chain sub -> ., esc -> sub/..", tar("chain", [("sub", "."), ("esc", "sub/..")]))
    p.case("archive: tar link to a link defined later", tar("later", [("a", "b/.."), ("b", "x/y/../..")]))

    def bomb():
        folder = p.folder("zip-bomb")
        with zipfile.ZipFile(folder / "b.zip", "w", zipfile.ZIP_DEFLATED) as z:
            z.writestr("big.bin", b"\0" * (300 << 20))
        outcome = refused(lambda: dl.extract(folder / "b.zip", folder / "out"), (dl.DownloadError,),
                          ["would expand to", "max_bytes"])
        if (folder / "out").exists() and any((folder / "out").iterdir()):
            return "WRONG", "wrote files"
        return outcome
    p.case("archive: 300 KB zip expanding to 300 MB", bomb)


# --------------------------------------------------------------------- issue 20: found from outside
def probe_families() -> None:
    """Register the probe's hash extractors as families ``det`` (text) and ``bytes`` (image)."""
    from utils.extractors import FAMILIES, register_family

    for name, cls in (("det", Det), ("bytes", Bytes)):
        if name not in FAMILIES.names():
            FAMILIES.register(name, modality=cls.modality)(cls)
            register_family(name, cls.__module__)


def found_cases(p: Probe) -> None:
    """The faults issue 20 found by using the framework from outside, each reproduced the way its unit test does
    (two racing jobs, weights saved in place, a lock of another pid namespace, a shard copied over another, table
    cells pandas would guess, a results folder that cannot be written, a test split with 2 positives, DAQUAR's
    ``in th eimage999 ?``)."""
    probe_families()
    one_thread()
    race_cases(p)
    weights_case(p)
    namespace_lock_case(p)
    copied_shard_cases(p)
    guessed_cell_cases(p)
    results_folder_cases(p)
    two_positives_case(p)
    daquar_case(p)


def race_cases(p: Probe) -> None:
    """Two jobs started at the same instant on an empty store, one with other options (``normalize``) or other
    inputs (one text edited). Creation was check-then-write: both wrote a manifest and the store ended with
    vectors of both under one manifest, and verify said ok. Now one creates the store and the other is refused
    (or, starting after the first finished, rebuilds it for its own rows); every job that succeeds has exactly
    the vectors of a clean run of its own, and the store left behind is one job's whole, verified in full."""
    from utils.embed import embed
    from utils.store import EmbeddingStore

    def clean(normalize: bool, edit: bool) -> np.ndarray:
        ds = text_dataset(60, edit=edit)
        root = p.folder(f"race-clean-{normalize}-{edit}")
        return embed(ds, "text", Det(), root=root, shard_size=10, show_progress=False,
                     normalize=normalize).aligned(ds.df["id"], verify="full")

    def why(message: str) -> str:  # "<folder> holds embeddings of something else (<why>). They will not be mixed ..."
        return message.split("something else (", 1)[-1].split("). They will not be mixed", 1)[0]

    def race(flag: str):
        def run():
            root = p.folder(f"race-{flag}")
            jobs = [("plain", []), (flag, [f"--{flag}"])]
            want = {"plain": clean(False, False), flag: clean(flag == "normalize", flag == "edit")}
            start = f"{time.time() + 1.5:.3f}"  # both children imported and waiting: they start together
            procs = {name: popen_child(root, "--sleep", "0.2", "--start-at", start, "--out",
                                       str(root / f"{name}.npy"), *args) for name, args in jobs}
            outs = {name: pr.communicate(timeout=120) for name, pr in procs.items()}
            ok, said = [], []
            for name, pr in procs.items():
                last = (outs[name][0].strip().splitlines() or ["{}"])[-1]
                if pr.returncode == 3:
                    msg = json.loads(last)["message"]
                    if "holds embeddings of something else" not in msg or "overwrite=True" not in msg:
                        return "UNCLEAR", f"job '{name}' refused without saying why: {msg[:200]}"
                    said.append(f"'{name}' refused ({why(msg)})")
                elif pr.returncode == 0:
                    if not np.array_equal(np.load(root / f"{name}.npy"), want[name]):
                        return "WRONG", f"job '{name}' finished with vectors that are not those of a clean run"
                    ok.append(name)
                else:
                    return "UNCLEAR", f"job '{name}' failed: {outs[name][1].strip().splitlines()[-1:]}"
            if not ok:
                return "UNCLEAR", "both jobs were refused: " + " | ".join(said)[:200]
            folder = store_folder(root)
            store = EmbeddingStore(folder)
            report = store.verify(full=True)
            got = store.aligned(text_dataset(60).df["id"], verify="full")
            whole = [name for name in want if np.array_equal(got, want[name])]
            if not whole:
                return "WRONG", (f"the store mixes the two jobs' vectors (verify: {'ok' if report.ok else report})")
            if not report.ok:
                return "UNCLEAR", f"the store holds one job's vectors but verify says: {report}"
            if said:
                return "refused", f"{said[0]}; '{ok[0]}' made the store: a clean run's vectors, verify(full=True) ok"
            return "identical", f"jobs {ok} each have a clean run's vectors; the store is '{whole[0]}''s, verified in full"
        return run

    p.case("found: two jobs start together on an empty store, one with normalize=True", race("normalize"))
    p.case("found: two jobs start together on an empty store, one with a text edited", race("edit"))


def weights_case(p: Probe) -> None:
    """``hf:/path/model`` whose weights were edited and saved in place reused the old vectors (only the path was
    in the store's identity). Now the weights' size and time are: refused, naming it; ``overwrite=True`` gives
    what the model now gives."""
    def run():
        import torch
        from transformers import BertModel

        from tests.conftest import make_tiny_bert
        from utils import extractors
        from utils.embed import embed
        from utils.store import StoreMismatchError

        folder = make_tiny_bert(p.folder("weights-model") / "bert")
        ds, emb = text_dataset(12), p.folder("weights-emb")
        first = embed(ds, "text", extractors.create(f"hf:{folder}"), root=emb, show_progress=False).aligned(ds.df["id"])
        again = embed(ds, "text", extractors.create(f"hf:{folder}"), root=emb, show_progress=False)
        if not again.reused:
            return "WRONG", "untouched weights were not reused"
        torch.manual_seed(5)
        BertModel(BertModel.from_pretrained(folder).config).save_pretrained(folder)  # the same path, other weights
        try:
            embed(ds, "text", extractors.create(f"hf:{folder}"), root=emb, show_progress=False)
        except StoreMismatchError as e:
            message = str(e)
        else:
            return "WRONG", "the old vectors were reused for the new weights"
        if "local weights changed" not in message or "overwrite=True" not in message:
            return "UNCLEAR", message[:200]
        fresh = embed(ds, "text", extractors.create(f"hf:{folder}"), root=emb, show_progress=False, overwrite=True)
        clean = embed(ds, "text", extractors.create(f"hf:{folder}"), root=p.folder("weights-clean"), show_progress=False)
        now = fresh.aligned(ds.df["id"])
        if not np.array_equal(now, clean.aligned(ds.df["id"])) or np.allclose(now, first):
            return "WRONG", "overwrite=True did not give the vectors the saved model now gives"
        return "refused", ("refused: " + message.split("something else (extractor: ", 1)[-1].split(")", 1)[0]
                           + "); overwrite=True then gives a clean run's vectors")
    p.case("found: a local model's weights saved again in place (hf:/path)", run)


def namespace_lock_case(p: Probe) -> None:
    """A job in a container restarted with the same host name (same kernel, another pid namespace) left a shard
    claim as pid 1: the waiting job took it for alive forever. Now only its heartbeat counts: while it is
    refreshed the claim is respected, once it stops the claim is taken over and the store finishes."""
    def run():
        import threading

        import utils.store.locks as locks
        from utils.embed import embed

        ds, root = text_dataset(60), p.folder("ns-lock")
        lock = store_folder(root) / "locks" / "shard-000000.lock"
        lock.parent.mkdir(parents=True)
        owner = {**locks.me(), "pid_ns": "pid:[4026531999]", "pid": 1, "taken": time.time(), "token": "theirs"}
        lock.write_text(json.dumps(owner))
        stolen, jammed = [], []

        def heartbeat():  # the other container's job, alive for 2.5 s more, refreshing its claim; then dead
            end = time.monotonic() + 2.5
            while time.monotonic() < end:
                if (locks.read_owner(lock) or {}).get("token") != "theirs":
                    stolen.append(time.monotonic())
                    return
                os.utime(lock)
                time.sleep(0.2)
            end = time.monotonic() + 15  # the job must take the dead claim over; if not, unjam it by hand
            while time.monotonic() < end and (locks.read_owner(lock) or {}).get("token") == "theirs":
                time.sleep(0.2)
            if (locks.read_owner(lock) or {}).get("token") == "theirs":
                jammed.append(True)
                lock.unlink()

        old, locks.STALE_AFTER_S = locks.STALE_AFTER_S, 1.0
        threading.Thread(target=heartbeat, daemon=True).start()
        t0 = time.monotonic()
        try:
            with Warnings() as told:
                got = embed(ds, "text", Det(), root=root, shard_size=10, show_progress=False).aligned(ds.df["id"])
        finally:
            locks.STALE_AFTER_S = old
        took = time.monotonic() - t0
        if stolen:
            return "WRONG", f"the claim was taken {stolen[0] - t0:.1f} s in, while its owner still refreshed it"
        if jammed:
            return "WRONG", "the job waited for the dead claim for 15 s (heartbeat limit 1 s) and had to be unjammed by hand"
        if not np.array_equal(got, reference(ds)):
            return "WRONG", "vectors differ from an uninterrupted run"
        over = [w for w in told.lines if "took over the lock" in w and "not refreshed" in w]
        if not over:
            return "UNCLEAR", "the claim was taken over without a word"
        return "identical", (f"waited while the claim was refreshed, took it over {took:.1f} s in once it stopped "
                             f"(heartbeat limit set to 1 s for the probe): " + over[0].replace(str(root), "…"))
    p.case("found: a shard claim left by pid 1 of another pid namespace (same host name)", run)


def copied_shard_cases(p: Probe) -> None:
    """Shard 0's files (checksums and all) copied over shard 1's gave a "complete" store with duplicate ids that
    verify passed. The shard number in each header and the ids across shards are checked now."""
    from utils.embed import embed
    from utils.store import EmbeddingStore

    ds = text_dataset(60)

    class Stop(Det):
        def _encode(self, items, **kw):
            if self.calls >= 3:
                raise KeyboardInterrupt("simulated crash")
            return super()._encode(items, **kw)

    def unfinished():
        root = p.folder("copied-shard")
        try:
            embed(ds, "text", Stop(), root=root, shard_size=10, show_progress=False)
        except KeyboardInterrupt:
            pass
        shards = store_folder(root) / "shards"
        copied = 0
        for suffix in (".npy", ".ids.npy", ".failed.json", ".meta.json"):
            if (shards / f"000000{suffix}").exists():
                shutil.copyfile(shards / f"000000{suffix}", shards / f"000001{suffix}")
                copied += 1
        ext = Det()
        with Warnings() as told:
            store = embed(ds, "text", ext, root=root, shard_size=10, show_progress=False)
        ids = store.read()[0]
        if len(set(ids.tolist())) != len(ids):
            return "WRONG", "the store holds duplicate ids"
        if not np.array_equal(store.aligned(ds.df["id"], verify="full"), reference(ds)):
            return "WRONG", "vectors differ from an uninterrupted run"
        if ext.calls != 4:
            return "WRONG", f"{ext.calls} shards computed, expected 4 (the copy and the 3 never written)"
        said = [w for w in told.lines if "belongs to shard 0" in w]
        return ("repaired", said[0].replace(str(root), "…")) if said else ("UNCLEAR", "recomputed without saying why")
    p.case("found: shard 0's files copied over shard 1's (unfinished store)", unfinished)

    def finished():
        from utils.store.files import npy_writer, write_file
        from utils.store import StoreIntegrityError

        root = p.folder("copied-ids")
        done = embed(ds, "text", Det(), root=root, shard_size=10, show_progress=False)
        ids = np.load(done.folder / "ids.npy")
        ids[15] = ids[5]  # shard 1's ids as shard 0's, with a checksum that agrees
        size, digest = write_file(done.folder / "ids.npy", npy_writer(ids))
        m = done.manifest()
        m["files"]["ids.npy"] = {"size": size, **{k: digest for k in m["files"]["ids.npy"] if k != "size"}}
        done.write_manifest(m)
        report = EmbeddingStore(done.folder).verify(full=True)
        if report.ok or "appear more than once" not in " ".join(report.problems):
            return "WRONG", "verify(full=True) passed a store with a repeated id"
        try:
            with Warnings() as told:
                store = embed(ds, "text", Det(), root=root, shard_size=10, show_progress=False, verify="full")
        except StoreIntegrityError as e:
            return ("refused", str(e).replace(str(root), "…")) if "ids.npy" in str(e) else ("UNCLEAR", str(e)[:200])
        if not np.array_equal(store.aligned(ds.df["id"], verify="full"), reference(ds)):
            return "WRONG", "vectors differ from an uninterrupted run"
        return "repaired", (told.first() or str(report)).replace(str(root), "…")
    p.case("found: a finished store's ids made to repeat (checksum updated to agree)", finished)


def guessed_cell_cases(p: Probe) -> None:
    """Cells pandas would guess at: a class named ``None`` lost its rows, texts ``NA`` / ``null`` / ``None`` became
    empty, ``01`` / ``02`` became 1 / 2, ``True`` / ``False`` became 1 / 0, ids ``00007`` and ``7`` became one id
    (dropped as conflicting), ``1`` and ``1.0`` were two classes. Every cell is read as its text now; the one
    conversion (a number written two ways in a numeric label column) is reported."""
    from utils import data

    folder = p.folder("guessed-cells")
    rows = ["id,text,label,flag,code",
            "00007,NA,None,True,01", "7,null,None,False,02", "8,None,cat,True,01", "9,a cat,cat,False,02",
            "10,,None,True,01", "11,a dog,dog,False,02"]
    (folder / "records.csv").write_text("\n".join(rows) + "\n")

    def load(label: str = "label", file: str = "records.csv"):
        return data.load("table", root=folder, file=file, text_column="text", image_column=None, label_column=label,
                         id_column="id", resplit=True)

    def table():
        return load().df.set_index("id")

    def class_none():
        ds = load()
        n = int((ds.df["label"] == "None").sum())
        if ds.spec.classes != ["None", "cat", "dog"] or n != 3:
            return "WRONG", f"classes {ds.spec.classes}, {n} rows of class 'None' (3 in the file)"
        return "identical", "class 'None' kept with its 3 rows"
    p.case("found: table: a class named None", class_none)

    def texts():
        df = table()
        got = {i: df["text"].get(i, "(row missing)") for i in ("00007", "7", "8")}
        if got != {"00007": "NA", "7": "null", "8": "None"}:
            return "WRONG", f"texts read as {got}"
        if "10" not in df.index or not pd.isna(df.loc["10", "text"]):
            return "WRONG", f"an empty cell read as {df['text'].get('10', '(row missing)')!r}"
        return "identical", "texts 'NA', 'null', 'None' embedded as written; only the empty cell is missing"
    p.case("found: table: texts NA / null / None", texts)

    def column(col: str, want: List[str]):
        def run():
            got = load(col).spec.classes
            return ("identical", f"classes {got}") if got == want else ("WRONG", f"classes {got}, the file says {want}")
        return run
    p.case("found: table: labels 01 / 02", column("code", ["01", "02"]))
    p.case("found: table: labels True / False", column("flag", ["False", "True"]))

    def ids():
        got = sorted(load().df["id"])
        want = sorted(["00007", "7", "8", "9", "10", "11"])
        return ("identical", "ids '00007' and '7' both kept") if got == want else ("WRONG", f"ids {got}")
    p.case("found: table: ids 00007 and 7", ids)

    def numbers():
        nums = ["id,text,label"] + [f"r{i},text {i},{v}" for i, v in enumerate(["1", "1.0", "2", "1", "2", "2.0", "1", "2"])]
        (folder / "nums.csv").write_text("\n".join(nums) + "\n")
        ds = load(file="nums.csv")
        if ds.spec.classes != ["1", "2"]:
            return "WRONG", f"classes {ds.spec.classes} for the labels 1, 1.0, 2, 2.0"
        rep = ds.spec.extra.get("load_report")
        said = rep.where("recovered") if rep is not None else []
        if len(said) != 2:
            return "WRONG", f"'1.0' read as '1' with {'no word' if not said else f'only {said}'}"
        return "reported", f"one class per number; '1.0' and '2.0' reported as recovered at {', '.join(said)}"
    p.case("found: table: labels 1 and 1.0 in a numeric column", numbers)


def results_folder_cases(p: Probe) -> None:
    """With the results folder read-only every head trained, then a raw OSError with no path; on a full disk the
    JSON was written and the figures and report silently lost. Now the folder is checked before anything loads
    or trains, and a write error while saving names the path and saves everything in a temporary folder."""
    import errno

    from utils.experiment import main as main_mod
    from utils.experiment.main import JobConfigError

    def job(**kw):
        return main_mod.main_job(dataset_options={"n": 90}, text_extractor="det:m", image_extractor="bytes:b",
                                 epochs=2, report_options={"n_resamples": 100}, figure_formats=["png"],
                                 data_dir=str(p.work / "found-data"), embeddings_dir=str(p.work / "found-emb"), **kw)

    def read_only():
        folder = p.folder("results-ro")
        how = "a read-only folder (chmod 555)"
        mounted = False
        if os.geteuid() == 0:  # root writes through chmod: mount a read-only tmpfs instead
            mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=64k", "tmpfs", str(folder)],
                                     capture_output=True).returncode == 0
            how = "a read-only tmpfs"
            if not mounted:
                folder = p.folder("results-ro-file") / "a-file"
                folder.write_text("not a folder")
                how = "a path under a regular file (root, no mount permission)"
        else:
            folder.chmod(0o555)
        loads: List[str] = []
        real = main_mod.load_dataset
        main_mod.load_dataset = lambda *a, **k: loads.append("loaded") or real(*a, **k)
        try:
            target = folder / "results" if how.startswith("a path") else folder
            outcome = refused(lambda: job(out_dir=str(target)), (JobConfigError,),
                              ["out_dir", "cannot write to", str(target)])
        finally:
            main_mod.load_dataset = real
            if mounted:
                subprocess.run(["umount", str(folder)], capture_output=True)
            elif folder.is_dir():
                folder.chmod(0o755)
        if loads:
            return "WRONG", "the data was loaded (and heads trained) before the refusal"
        return outcome[0], f"{how}: " + outcome[1].replace(str(p.work), "…")
    p.case("found: results folder read-only (checked before training)", read_only)

    def full_mid_save():
        out = p.folder("results-full")
        real, calls = main_mod.plot_results, []

        def full_disk_once(table, path, **kw):  # the JSON is written; the disk fills at the figure
            calls.append(path)
            if len(calls) == 1:
                raise OSError(errno.ENOSPC, "No space left on device", str(path))
            return real(table, path, **kw)

        logs = io.StringIO()
        handler = logging.StreamHandler(logs)
        logging.getLogger("utils").addHandler(handler)
        main_mod.plot_results = full_disk_once
        try:
            done = job(out_dir=str(out))
        finally:
            main_mod.plot_results = real
            logging.getLogger("utils").removeHandler(handler)
        spare, said = done.results.parent, logs.getvalue()
        if spare == out or str(out) not in said or str(spare) not in said or "No space left" not in said:
            return "WRONG", f"the write error was not said with both paths: {said.strip()[-200:]}"
        kept = sorted(f.name for f in spare.iterdir())
        want = [f"embed_model_synthetic.{x}" for x in ("json", "png")]
        if not all(w in kept for w in want) or done.report is None or done.model_dir is None or not done.model_dir.is_dir():
            return "WRONG", f"not everything was saved in {spare}: {kept}"
        shutil.rmtree(spare, ignore_errors=True)
        error = next(line for line in said.splitlines() if "could not write the results" in line)
        return "reported", (error.replace(str(p.work), "…").replace(str(spare), "/tmp/mmfusion-…") + f" ({len(done.table)} "
                            f"heads' table, figure, report: {len(kept)} files, and the model)")
    p.case("found: disk full while saving the results (figure fails after the JSON)", full_mid_save)


def two_positives_case(p: Probe) -> None:
    """A binary test split with 2 positives reported AUC and macro-F1 as 1.000 [1.000, 1.000] with no word. Every
    row on such a split carries an ``interval_note`` now, and the report's interval table shows it."""
    def run():
        from utils import experiment as ex
        from utils.data import DatasetSpec, MultimodalDataset

        rng = np.random.default_rng(0)
        labels = ["neg", "pos"] * 40 + ["neg"] * 38 + ["pos"] * 2
        splits = ["train"] * 60 + ["val"] * 20 + ["test"] * 40
        n = len(labels)
        df = pd.DataFrame({"id": [f"r{i:04d}" for i in range(n)], "text": ["x"] * n, "image_path": ["x.png"] * n,
                           "label": labels, "split": splits})
        ds = MultimodalDataset(df, DatasetSpec("two-positives", "binary", ["neg", "pos"]))
        y = ds.labels()
        text = (rng.normal(size=(n, 6)) + 6.0 * np.eye(2, 6)[y]).astype(np.float32)  # separable: 2 positives, AUC 1
        emb = ex.Embeddings({"text": text, "image": rng.normal(size=(n, 4)).astype(np.float32)},
                            {"text": "t", "image": "i"}, ids=ds.df["id"])
        rows = ex.train_heads(ds, emb, ["text_only", "early_fusion"], epochs=20, seeds=[0], show_progress=False)
        rep = ex.report(rows, shapley=False, figures=False)
        quiet = [r["model"] for r in rows if "too small" not in str(r.get("interval_note")) or "'pos' 2" not in str(r.get("interval_note"))]
        if quiet:
            return "WRONG", f"rows {quiet} scored on 2 positives without a note"
        if not rep.intervals["note"].astype(str).str.contains("too small").all():
            return "WRONG", "the report's interval table does not carry the note"
        r = max(rows, key=lambda r: (r["roc_auc"] + r["macro_f1"], r["macro_f1_ci_low"]))  # the row that claims most
        return "reported", (f"{r['model']}: AUC {r['roc_auc']:.3f} [{r['roc_auc_ci_low']:.3f}, {r['roc_auc_ci_high']:.3f}], "
                            f"macro-F1 {r['macro_f1']:.3f} [{r['macro_f1_ci_low']:.3f}, {r['macro_f1_ci_high']:.3f}], "
                            f"marked: {r['interval_note']}")
    p.case("found: a binary test split with 2 positives", run)


def daquar_case(p: Probe) -> None:
    """DAQUAR's published training file has ``how many drawers are visible in th eimage999 ?``; it was skipped
    (6,794 records instead of 6,795) although its image is certain. Recovered and reported now; a question with
    two possible readings is still skipped."""
    def run():
        from PIL import Image

        from utils import data

        root = p.folder("daquar")
        (root / "nyu_depth_images").mkdir()
        for img in (1, 2, 3, 4, 999):
            Image.fromarray(np.full((8, 8, 3), img % 250, np.uint8)).save(root / f"nyu_depth_images/image{img}.png")
        answers = ["chair", "table", "lamp"]
        for split, imgs in (("train", (1, 2, 3)), ("test", (4,))):
            lines = []
            for i in range(12):
                lines += [f"what is beside the bed in the image{imgs[i % len(imgs)]} ?", answers[i % 3]]
            if split == "train":
                lines += ["how many drawers are visible in th eimage999 ?", "chair",  # the real line (lines 25-26)
                          "what is left of ximage1 and yimage2 ?", "lamp"]  # two readings: not certain
            (root / f"qa.894.raw.{split}.txt").write_text("\n".join(lines) + "\n")
        ds = data.load("daquar", root=root)
        rep = ds.spec.extra.get("load_report")
        row = ds.df[ds.df["image_path"] == "nyu_depth_images/image999.png"]
        if len(row) != 1:
            return "WRONG", "the line with the image reference glued to 'th' was not loaded"
        if row["text"].iloc[0] != "how many drawers are visible?" or list(row["label"].iloc[0]) != ["chair"]:
            return "WRONG", f"recovered as {row['text'].iloc[0]!r} -> {list(row['label'].iloc[0])}"
        got = rep.where("recovered", "image reference glued to the word before it") if rep is not None else []
        if got != ["qa.894.raw.train.txt:25"]:
            return "WRONG", f"recovered without a word (report: {got})"
        skipped = rep.where("skipped")
        if "qa.894.raw.train.txt:27" not in skipped or any(ds.df["text"].str.contains("left of")):
            return "WRONG", "the question with two readings was loaded as a guess"
        return "reported", f"recovered and reported at {got[0]} (image999); the two-reading question skipped at {skipped[0]}"
    p.case("found: DAQUAR's 'in th eimage999 ?' line", run)


# ------------------------------------------------------------------------------------------ fuzzing
FUZZ_TABLES = 240  # seeded table mutations per run
FUZZ_STORES = 60  # seeded byte-level damage to a finished store's files per run


def _clean_table(n: int = 40) -> List[Tuple[str, str]]:
    """``[(id, line)]`` of a clean table (header first, id ""): non-ASCII text, two classes in every split."""
    splits = ["train"] * 6 + ["val"] * 2 + ["test"] * 2
    rows = [("", "id,text,label,split")]
    for i in range(n):
        rows.append((f"p{i:03d}", f"p{i:03d},caf\u00e9 note {i} \u2013 ok,{['benign', 'malignant'][i % 2]},{splits[(i // 2) % 10]}"))
    return rows


def _mutate(rng: np.random.Generator, rows: List[Tuple[str, str]]) -> Tuple[str, bytes, set]:
    """One seeded mutation of the table: ``(what, file bytes, ids of the rows it touched)``. A mutation that
    keeps the meaning touches no row (the load must equal the clean one); one that changes rows names them."""
    body = list(rows)
    ids = [r for r, _ in body[1:]]
    kind = rng.choice(["bom", "crlf", "mixed_eol", "reorder", "exact_dup", "blank_lines", "label_case", "label_space",
                       "id_space", "flip", "truncate", "drop_cell", "blank_label", "nan_label", "case_id", "conflict_id",
                       "test_only_class", "typo_class", "latin1", "utf16", "mixed_encoding", "extra_column",
                       "number_label", "quote"])
    touched: set = set()
    eol, enc, prefix = "\n", "utf-8", b""
    k = int(rng.integers(1, len(body)))
    rid, line = body[k]
    if kind == "bom":
        prefix = b"\xef\xbb\xbf"
    elif kind == "crlf":
        eol = "\r\n"
    elif kind == "mixed_eol":
        body = [(r, ln + ("\r" if rng.random() < 0.5 else "")) for r, ln in body]
    elif kind == "reorder":
        rest = body[1:]
        rng.shuffle(rest)
        body = [body[0]] + rest
    elif kind == "exact_dup":
        body.insert(int(rng.integers(1, len(body) + 1)), (rid, line))
    elif kind == "blank_lines":
        body.insert(k, ("", ""))
        body.append(("", "   "))
    elif kind == "label_case":
        body[k] = (rid, line.replace(",benign,", ",Benign,").replace(",malignant,", ",MALIGNANT,"))
    elif kind == "label_space":
        body[k] = (rid, line.replace(",benign,", ", benign ,").replace(",malignant,", ",malignant ,"))
    elif kind == "id_space":
        body[k] = (rid, " " + line.replace(",", " ,", 1))
    elif kind == "flip":
        b = bytearray(line.encode())
        b[int(rng.integers(0, len(b)))] = int(rng.integers(0, 256))
        body[k] = (rid, b.decode("utf-8", "surrogateescape"))
        touched = {rid}
    elif kind == "truncate":
        cut = int(rng.integers(0, len(line) + 1))
        body = body[:k] + [(rid, line[:cut])]
        touched = set(ids[k - 1:])
        eol = "" if rng.random() < 0.5 else "\n"
    elif kind == "drop_cell":
        parts = line.split(",")
        del parts[int(rng.integers(0, len(parts)))]
        body[k] = (rid, ",".join(parts))
        touched = {rid}
    elif kind == "blank_label":
        body[k] = (rid, line.replace(",benign,", ",,").replace(",malignant,", ",,"))
        touched = {rid}
    elif kind == "nan_label":
        body[k] = (rid, line.replace(",benign,", ",NaN,").replace(",malignant,", ",null,"))
        touched = {rid}
    elif kind == "case_id":
        other = body[int(rng.integers(1, len(body)))][0]
        body.insert(k, ("*", other.upper() + ",an extra record,benign,train"))
    elif kind == "conflict_id":
        body.append((rid, rid + ",another text,malignant,train"))
        touched = {rid}
    elif kind == "test_only_class":
        body[k] = (rid, line.rsplit(",", 2)[0] + ",rare,test")
        touched = {rid}
    elif kind == "typo_class":
        body[k] = (rid, line.replace(",benign,", ",benigm,").replace(",malignant,", ",malignnt,"))
        touched = {rid}
    elif kind == "latin1":
        enc = "latin-1"
    elif kind == "utf16":
        enc = "utf-16"
    elif kind == "mixed_encoding":
        body[k] = (rid, line.encode("utf-8").decode("utf-8").encode("cp1252", "replace").decode("latin-1"))
        touched = {rid}
        enc = "mixed"
    elif kind == "extra_column":
        body = [(r, ln + (",extra" if r == "" else f",{i}")) for i, (r, ln) in enumerate(body)]
    elif kind == "number_label":
        body = [(r, ln.replace(",benign,", ",1,").replace(",malignant,", ",2,")) for r, ln in body]
        k2 = int(rng.integers(1, len(body)))
        body[k2] = (body[k2][0], body[k2][1].replace(",1,", ",1.0,").replace(",2,", ",02,"))
    elif kind == "quote":
        body[k] = (rid, line.replace("caf", '"caf', 1))
        touched = set(ids[k - 1:])  # an unclosed quote may swallow the lines after it
    text = eol.join(ln for _, ln in body) + ("\n" if kind != "truncate" else eol)
    if enc == "mixed":
        data = b"".join((ln.encode("latin-1") if r == rid else ln.encode("utf-8")) + b"\n" for r, ln in body)
    elif enc == "latin-1":
        data = text.replace("\u2013", "-").encode("latin-1")
    else:
        data = text.encode(enc, "surrogateescape")
    return str(kind), prefix + data, touched


def _table_rows(ds) -> Dict[str, Tuple[str, str, str]]:
    return {r.id: (r.text, str(r.label), r.split) for r in ds.df[["id", "text", "label", "split"]].itertuples()}


def table_fuzz_outcome(data: bytes, touched: set, clean: Dict[str, Tuple[str, str, str]], folder: Path,
                       kind: str) -> Tuple[str, str]:
    """Load ``data`` as records.csv: ``identical`` (the clean rows), ``refused`` (a DatasetError naming the file),
    ``reported`` (rows differ only where the mutation touched them, or the load report names what changed and the
    line), ``WRONG`` (an untouched row changed, or the classes changed, without a word), ``UNCLEAR`` (a raw error)."""
    from utils import data as data_mod
    from utils.data import DatasetError
    from utils.data.quirks import report_of

    (folder / "records.csv").write_bytes(data)
    try:
        with Warnings() as told:
            ds = data_mod.load("table", root=folder, id_column="id", image_column=None, carve_val=True)
    except DatasetError as e:
        return ("refused", str(e)[:120]) if "records.csv" in str(e) or "table" in str(e) else ("UNCLEAR", str(e)[:200])
    except Exception as e:  # noqa: BLE001
        return "UNCLEAR", f"{type(e).__name__}: {str(e)[:200]}"
    got = _table_rows(ds)
    rep = report_of(ds)
    said = rep is not None and bool(rep.issues) or bool(told.lines)  # the load report, or a warning (val carved)
    if got == clean:
        return "identical", rep.headline() if rep is not None and rep.issues else ""
    changed = {i for i in clean if got.get(i) != clean[i]} | {i for i in got if i not in clean}
    quiet = [i for i in changed if i not in touched and i in clean]
    if quiet and not said:
        return "WRONG", f"{kind}: rows {sorted(quiet)[:5]} changed with no word"
    if len([i for i in got if i not in clean]) > max(len(touched), 1) and not said:
        return "WRONG", f"{kind}: new ids {sorted(i for i in got if i not in clean)[:5]} with no word"
    if set(ds.spec.classes) != {"benign", "malignant"} and not (rep is not None and (rep.n_noted or rep.n_skipped)) \
            and kind != "number_label":
        return "WRONG", f"{kind}: classes became {ds.spec.classes} with no word"
    if said:
        return "reported", rep.headline() if rep is not None and rep.issues else told.first()
    return "reported", f"only the touched row(s) {sorted(changed)[:3]} differ"


def fuzz_cases(p: Probe, seed: int = 0, tables: int = FUZZ_TABLES, stores: int = FUZZ_STORES) -> None:
    """Seeded mutation of dataset tables and of a finished store's files: every outcome must be identical to a
    clean run, a clear error, or (tables) a change the load report names."""
    from utils import data as data_mod
    from utils import experiment as ex

    rng = np.random.default_rng(seed)
    rows = _clean_table()
    folder = p.folder("fuzz-clean")
    (folder / "records.csv").write_text("\n".join(ln for _, ln in rows) + "\n", encoding="utf-8")
    clean = _table_rows(data_mod.load("table", root=folder, id_column="id", image_column=None))
    work = p.folder("fuzz-table")
    for i in range(tables):
        kind, data, touched = _mutate(rng, rows)
        p.case(f"fuzz table {i:03d} ({kind})", lambda d=data, t=touched, k=kind: table_fuzz_outcome(d, t, clean, work, k))

    # stores: random byte flips and truncations in the files of a finished store
    from utils.store import StoreBusyError, StoreIntegrityError, StoreMismatchError

    ds = text_dataset(300)
    ref = reference(ds)
    pristine = p.folder("fuzz-store-pristine")
    ex.extract_embeddings(ds, {"text": "det:m"}, embeddings_dir=pristine, show_progress=False)
    files = sorted(f.relative_to(pristine) for f in store_folder(pristine).rglob("*") if f.is_file())

    def store_case(rel: Path, how: str, at: float, value: int):
        def run():
            root = p.folder("fuzz-store")
            shutil.copytree(pristine, root, dirs_exist_ok=True)
            target = root / rel
            data = bytearray(target.read_bytes())
            if how == "truncate":
                data = data[: int(len(data) * at)]
            elif data:
                pos = min(int(len(data) * at), len(data) - 1)
                data[pos] = (data[pos] ^ value) or 1
            target.write_bytes(bytes(data))
            try:
                with Warnings() as told:
                    got = ex.extract_embeddings(ds, {"text": "det:m"}, embeddings_dir=root, show_progress=False).vectors["text"]
            except (StoreIntegrityError, StoreMismatchError, StoreBusyError) as e:
                text = str(e)
                return ("refused", text[:120]) if rel.name in text or "overwrite=True" in text else ("UNCLEAR", text[:200])
            except Exception as e:  # noqa: BLE001
                return "UNCLEAR", f"{type(e).__name__}: {str(e)[:200]}"
            if not np.array_equal(got, ref):
                return "WRONG", f"vectors differ after {how} of {rel.name}"
            return ("repaired", told.first().replace(str(root), "…")) if told.lines else ("identical", "")
        return run

    for i in range(stores):
        rel = files[int(rng.integers(0, len(files)))]
        how = "truncate" if rng.random() < 0.3 else "flip"
        p.case(f"fuzz store {i:02d} ({how} {rel.name})",
               store_case(rel, how, float(rng.random()), int(rng.integers(1, 256))))


# ------------------------------------------------------------------------------------------ main
GROUPS = {"kills": kill_cases, "concurrent": concurrent_cases, "damage": damage_cases, "space": space_cases,
          "fingerprint": fingerprint_cases, "images": image_cases, "tables": table_cases,
          "texts": text_cases, "training": training_cases, "parameters": parameter_cases, "openai": openai_cases,
          "archives": archive_cases, "found": found_cases, "fuzz": fuzz_cases}


def main(argv: Optional[Sequence[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--only", nargs="*", choices=sorted(GROUPS), help="run these groups only")
    ap.add_argument("--work", default=None, help="scratch folder (default: a temporary one)")
    ap.add_argument("--verbose", action="store_true")
    a = ap.parse_args(argv)
    logging.basicConfig(level=logging.ERROR)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    work = Path(a.work) if a.work else Path(tempfile.mkdtemp(prefix="faults-"))
    os.environ["MMFUSION_EMBEDDINGS_DIR"] = str(work / "embeddings")
    probe = Probe(work, a.verbose)
    t0 = time.perf_counter()
    try:
        order = ["kills", "concurrent", "damage", "space", "fingerprint", "images", "tables", "texts", "training",
                 "parameters", "openai", "archives", "found", "fuzz"]
        for name in order:
            if a.only and name not in a.only:
                continue
            probe_families()  # the hash extractors as families det: / bytes: (tables, fuzz and found use them)
            GROUPS[name](probe)
    finally:
        if not a.work:
            shutil.rmtree(work, ignore_errors=True)
    counts = {k: sum(1 for r in probe.rows if r[1] == k) for k in ("identical", "repaired", "refused", "reported", "WRONG",
                                                                    "UNCLEAR")}
    print()
    print(f"cases_tried: {len(probe.rows)}")
    print(f"identical_after_resume_or_correct: {counts['identical']}")
    print(f"repaired: {counts['repaired']}")
    print(f"refused_with_clear_error: {counts['refused']}")
    print(f"loaded_with_the_change_reported: {counts['reported']}")
    print(f"silently_wrong: {counts['WRONG']}")
    print(f"unclear_errors: {counts['UNCLEAR']}")
    print(f"seconds: {time.perf_counter() - t0:.1f}")
    return 0 if counts["WRONG"] == 0 and counts["UNCLEAR"] == 0 else 1


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "child":
        child(sys.argv[2:])
    else:
        sys.exit(main())
