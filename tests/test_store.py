"""The embedding store: atomic shards, resume after a crash, reuse, refusal to mix, sliced jobs."""

from __future__ import annotations

import json
import logging

import os

import numpy as np
import pandas as pd
import pytest

from utils.data import DatasetSpec, MultimodalDataset
from utils.embed import embed
from utils.extractors.base import Extractor
from utils.store import EmbeddingStore, IncompleteStoreError, StoreMismatchError


class CountingExtractor(Extractor):
    """Deterministic fake text extractor: counts calls and can crash on a chosen call."""

    family = "fake"
    modality = "text"

    def __init__(self, model_id="count", crash_on_call=None, dim=6):
        super().__init__(model_id, dim=dim)
        self.calls = 0
        self.crash_on_call = crash_on_call

    def _encode(self, items, batch_size, device, show_progress, on_error):
        self.calls += 1
        if self.crash_on_call == self.calls:
            raise KeyboardInterrupt("simulated kill")
        d = self.options["dim"]
        return np.array([[len(t) + j + sum(map(ord, t)) % 7 for j in range(d)] for t in items], dtype=np.float32)


def make_ds(n=25, name="toy"):
    df = pd.DataFrame({
        "id": [f"r{i}" for i in range(n)],
        "text": [f"text number {i}" * (i % 3 + 1) for i in range(n)],
        "label": ["a", "b"] * (n // 2) + ["a"] * (n % 2),
        "split": "train",
    })
    return MultimodalDataset(df, DatasetSpec(name=name, task="multiclass", classes=["a", "b"], modalities=["text"]))


def test_embed_writes_a_complete_manifested_store(tmp_path):
    ds = make_ds()
    store = embed(ds, "text", CountingExtractor(), root=tmp_path, shard_size=10, show_progress=False)
    m = store.manifest()
    assert m["complete"] and m["count"] == 25 and m["n_vectors"] == 25 and m["dim"] == 6
    assert m["extractor"]["id"] == "fake:count" and "torch" in m["versions"] and m["dataset"] == "toy"
    ids, vec = store.read()
    assert isinstance(vec, np.memmap) and vec.shape == (25, 6) and ids.tolist() == ds.df.id.tolist()
    assert not (store.folder / "shards").exists()  # consolidated
    al = store.aligned(["r3", "r0"])
    np.testing.assert_array_equal(al, np.asarray(vec[[3, 0]]))
    with pytest.raises(KeyError, match="no vector"):
        store.aligned(["zzz"])


def test_second_run_does_no_work_and_says_so(tmp_path, caplog):
    ds = make_ds()
    embed(ds, "text", CountingExtractor(), root=tmp_path, shard_size=10, show_progress=False)
    ext = CountingExtractor()
    with caplog.at_level(logging.INFO, logger="utils"):
        store = embed(ds, "text", ext, root=tmp_path, shard_size=10, show_progress=False)
    assert ext.calls == 0 and store.reused
    assert any("reusing cached" in r.message for r in caplog.records)


def test_killed_run_resumes_and_matches_an_uninterrupted_run(tmp_path):
    ds = make_ds()
    full = embed(ds, "text", CountingExtractor(), root=tmp_path / "ref", shard_size=10, show_progress=False)
    crashing = CountingExtractor(crash_on_call=2)
    with pytest.raises(KeyboardInterrupt):
        embed(ds, "text", crashing, root=tmp_path / "run", shard_size=10, show_progress=False)
    partial = EmbeddingStore(full.folder.as_posix().replace("/ref/", "/run/"))
    assert partial.has_shard(0) and not partial.has_shard(1) and not partial.is_complete()
    assert not list(partial.shard_dir.glob("*.tmp"))  # no half-written shard
    with pytest.raises(IncompleteStoreError, match="resume"):
        partial.read()
    again = CountingExtractor()
    store = embed(ds, "text", again, root=tmp_path / "run", shard_size=10, show_progress=False)
    assert again.calls == 2  # only shards 1 and 2 were computed
    np.testing.assert_array_equal(np.asarray(store.read()[1]), np.asarray(full.read()[1]))


def test_an_edited_row_is_recomputed_the_rest_reused_by_id_never_mixed(tmp_path, caplog):
    """Issue 20: one text edited: only that row is computed again (the others' vectors are reused by id and
    input key), and the result equals a clean run on the edited table bit for bit."""
    ds = make_ds()
    embed(ds, "text", CountingExtractor(), root=tmp_path, shard_size=10, show_progress=False)
    changed = make_ds()
    changed.df.loc[4, "text"] = "edited"
    ext = CountingExtractor()
    with caplog.at_level(logging.INFO, logger="utils.embed"):
        store = embed(changed, "text", ext, root=tmp_path, shard_size=10, show_progress=False)
    assert "reusing 24 vector(s) by id and computing 1 new or changed row(s)" in caplog.text
    assert ext.calls == 1 and store.manifest()["fingerprint"] == changed.fingerprint("text")
    clean = embed(changed, "text", CountingExtractor(), root=tmp_path / "clean", shard_size=10, show_progress=False)
    np.testing.assert_array_equal(store.aligned(changed.df["id"]), clean.aligned(changed.df["id"]))
    # a manifest written by another extractor in the same folder is refused, never reused by id
    m = json.loads(store.manifest_path.read_text())
    m["extractor"]["id"] = "fake:other"
    store.manifest_path.write_text(json.dumps(m))
    with pytest.raises(StoreMismatchError, match="extractor"):
        embed(changed, "text", CountingExtractor(), root=tmp_path, shard_size=10, show_progress=False)


@pytest.mark.parametrize("how", ["shard_size", "reversed", "subset"])
def test_a_store_is_reused_by_id_for_another_shard_size_order_or_a_subset(tmp_path, caplog, how):
    """Issue 20: these used to be refused with a hint to overwrite=True (which discards the store)."""
    ds = make_ds(30)
    first = embed(ds, "text", CountingExtractor(), root=tmp_path, shard_size=10, show_progress=False)
    want = first.aligned(ds.df["id"])
    rows = {"shard_size": np.arange(30), "reversed": np.arange(29, -1, -1), "subset": np.arange(0, 30, 3)}[how]
    other = ds.take(rows)
    ext = CountingExtractor()
    with caplog.at_level(logging.INFO, logger="utils.embed"):
        store = embed(other, "text", ext, root=tmp_path, shard_size=7 if how == "shard_size" else 10,
                      show_progress=False)
    assert ext.calls == 0 and store.reused and "by id" in caplog.text
    np.testing.assert_array_equal(store.aligned(other.df["id"]), want[rows])
    assert store.manifest()["count"] == 30  # the store itself is left as it was, for the full table


def test_reuse_by_id_needs_the_same_input_not_only_the_same_id(tmp_path):
    """Ids reused for other rows (a table renumbered r0, r1, ...) get their own vectors; a superset computes
    only its new rows; a store whose inputs record is damaged is not trusted for reuse by id, and a store with
    no row in common is refused as before (overwrite=True rebuilds it)."""
    ds = make_ds(20)
    embed(ds, "text", CountingExtractor(), root=tmp_path, shard_size=10, show_progress=False)
    renumbered = make_ds(20)
    renumbered.df.loc[:9, "text"] = [f"another record {i}" for i in range(10)]  # same ids, other texts
    ext = CountingExtractor()
    store = embed(renumbered, "text", ext, root=tmp_path, shard_size=10, show_progress=False)
    assert ext.calls == 1  # shard 0 (the 10 changed rows) only
    clean = embed(renumbered, "text", CountingExtractor(), root=tmp_path / "clean", shard_size=10, show_progress=False)
    np.testing.assert_array_equal(store.aligned(renumbered.df["id"]), clean.aligned(renumbered.df["id"]))
    bigger = make_ds(26)
    bigger.df["text"] = list(renumbered.df["text"]) + list(bigger.df["text"][20:])
    ext = CountingExtractor()
    store = embed(bigger, "text", ext, root=tmp_path, shard_size=10, show_progress=False)
    assert ext.calls == 1 and len(store.read()[0]) == 26  # one call: the 6 new rows of the last shard
    (store.folder / "inputs.npy").write_bytes(b"\x93NUMPY garbage")
    assert store.inputs() is None
    with pytest.raises(StoreMismatchError):
        embed(bigger.take(np.arange(5)), "text", CountingExtractor(), root=tmp_path, shard_size=10, show_progress=False)
    other = make_ds(20)
    other.df["text"] = [f"nothing alike {i}" for i in range(20)]
    with pytest.raises(StoreMismatchError, match="fingerprint"):
        embed(other, "text", CountingExtractor(), root=tmp_path / "clean", shard_size=10, show_progress=False)


def test_sliced_jobs_merge_into_one_store(tmp_path):
    ds = make_ds(n=47)
    ref = embed(ds, "text", CountingExtractor(), root=tmp_path / "one", shard_size=8, show_progress=False)
    jobs = [CountingExtractor() for _ in range(3)]
    for i, ext in enumerate(jobs):
        store = embed(ds, "text", ext, root=tmp_path / "many", shard_size=8, shard=i, num_shards=3, show_progress=False)
        assert store.is_complete() == (i == 2)
    assert [e.calls for e in jobs] == [2, 2, 2]
    np.testing.assert_array_equal(np.asarray(store.read()[1]), np.asarray(ref.read()[1]))


def test_failed_rows_are_recorded_and_visible(tmp_path):
    class Flaky(CountingExtractor):
        def _encode(self, items, batch_size, device, show_progress, on_error):
            out = super()._encode(items, batch_size, device, show_progress, on_error)
            for i, t in enumerate(items):
                if t.startswith("text number 7"):
                    self.last_failures[i] = "OSError: truncated file"
            return out

    ds = make_ds()
    store = embed(ds, "text", Flaky(), root=tmp_path, shard_size=10, show_progress=False, on_error="skip")
    assert store.failed == {"r7": "OSError: truncated file"}
    ids, vec = store.read()
    assert "r7" not in ids.tolist() and vec.shape[0] == 24
    al = store.aligned(ds.df.id, missing="nan")
    assert np.isnan(al[7]).all() and np.isfinite(np.delete(al, 7, axis=0)).all()
    with pytest.raises(KeyError, match="truncated file"):
        store.aligned(["r7"])


def test_nan_vectors_are_an_error_not_a_silent_result(tmp_path):
    class NaNs(CountingExtractor):
        def _encode(self, items, *a):
            out = super()._encode(items, *a)
            out[1] = np.nan
            return out

    with pytest.raises(Exception, match="NaN"):
        NaNs().encode(["a", "b", "c"], show_progress=False)


KILL_SCRIPT = r'''
import sys, time
import numpy as np, pandas as pd
from utils.data import DatasetSpec, MultimodalDataset
from utils.embed import embed
from utils.extractors.base import Extractor

class Slow(Extractor):
    family, modality = "slow", "text"
    def _encode(self, items, batch_size, device, show_progress, on_error):
        time.sleep(float(sys.argv[2]))
        return np.array([[len(t), sum(map(ord, t)) % 97, 1.0] for t in items], dtype=np.float32)

df = pd.DataFrame({"id": [f"r{i}" for i in range(40)], "text": [f"row {i}" for i in range(40)],
                   "label": "a", "split": "train"})
ds = MultimodalDataset(df, DatasetSpec(name="kill", task="multiclass", classes=["a"], modalities=["text"]))
store = embed(ds, "text", Slow("m"), root=sys.argv[1], shard_size=10, show_progress=False)
print("calls-done", store.is_complete())
'''


def test_sigkill_during_extraction_then_rerun_resumes(tmp_path):
    import os
    import signal
    import subprocess
    import sys
    import time

    script = tmp_path / "job.py"
    script.write_text(KILL_SCRIPT)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    root = tmp_path / "emb"
    proc = subprocess.Popen([sys.executable, str(script), str(root), "0.6"], env=env)
    shard_dir = root / "kill" / "text" / "slow_m" / "shards"
    deadline = time.time() + 60
    while time.time() < deadline and len(list(shard_dir.glob("*[0-9].npy"))) < 2:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done = sorted(p.name for p in shard_dir.glob("*[0-9].npy"))
    assert 2 <= len(done) < 4, done
    for p in shard_dir.glob("*[0-9].npy"):
        assert np.load(p).shape == (10, 3)  # every shard on disk is whole
    out = subprocess.run([sys.executable, str(script), str(root), "0"], env=env, capture_output=True, text=True)
    assert "calls-done True" in out.stdout, out.stderr
    ref = subprocess.run([sys.executable, str(script), str(tmp_path / "ref"), "0"], env=env, capture_output=True, text=True)
    assert "calls-done True" in ref.stdout
    a = EmbeddingStore(root / "kill" / "text" / "slow_m").read()
    b = EmbeddingStore(tmp_path / "ref" / "kill" / "text" / "slow_m").read()
    assert a[0].tolist() == b[0].tolist()
    np.testing.assert_array_equal(np.asarray(a[1]), np.asarray(b[1]))


# ------------------------------------------------------------------------------- issue 12: locks
def _dead_pid():
    import subprocess
    import sys

    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


def _write_lock(path, **owner):
    from utils.store.locks import me

    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({**me(), "taken": 0, "token": "theirs", **owner}))


def test_lock_names_its_owner_and_a_dead_owner_is_taken_over_at_once(tmp_path, caplog):
    from utils.store.locks import me, read_owner, try_acquire

    path = tmp_path / "locks" / "store.lock"
    lock, owner = try_acquire(path)
    assert lock is not None and owner is None
    got = read_owner(path)
    assert {got["pid"], got["host"]} == {me()["pid"], me()["host"]} and got["started"] and got["taken"]
    assert try_acquire(path)[0] is None  # held by a live process (this one): not taken
    lock.release()
    assert not path.exists()
    _write_lock(path, pid=_dead_pid())
    with caplog.at_level(logging.WARNING, logger="utils"):
        lock, _ = try_acquire(path)
    assert lock is not None and "is not running" in caplog.text
    lock.release()
    _write_lock(path, started=12345.0)  # our pid, but the process holding it started at another time
    lock, _ = try_acquire(path)
    assert lock is not None
    lock.release()


def test_lock_of_another_host_waits_for_its_heartbeat_to_stop(tmp_path, monkeypatch):
    import utils.store.locks as locks

    path = tmp_path / "shard-000001.lock"
    _write_lock(path, host="elsewhere", boot="x", pid_ns="y", pid=1)
    assert locks.try_acquire(path)[0] is None  # first sight: its owner may be working
    monkeypatch.setattr(locks, "STALE_AFTER_S", 0.05)
    assert locks.try_acquire(path)[0] is None
    import os
    import time

    os.utime(path)  # a heartbeat: the clock restarts
    locks.try_acquire(path)
    time.sleep(0.1)
    lock, _ = locks.try_acquire(path)
    assert lock is not None


def test_a_lock_from_another_pid_namespace_on_this_kernel_is_judged_by_its_heartbeat(tmp_path, monkeypatch):
    """Issue 20: a container restarted with the same host name and kernel left a lock (pid 1 of its old pid
    namespace); the waiting job took it for alive forever ("waiting ... pid 1"). Same host and boot, another
    pid namespace: the pid means nothing here, so the heartbeat decides."""
    import time

    import utils.store.locks as locks

    here = locks.machine()
    path = tmp_path / "store.lock"
    _write_lock(path, host=here["host"], boot=here["boot"], pid_ns="pid:[4026531999]", pid=1)
    monkeypatch.setattr(locks, "STALE_AFTER_S", 0.05)
    assert locks.try_acquire(path)[0] is None  # first sight: it may be alive in its namespace
    time.sleep(0.1)
    lock, _ = locks.try_acquire(path)
    assert lock is not None  # no refresh since: taken over


def test_a_merge_lock_left_by_a_killed_job_does_not_jam_the_store(tmp_path, caplog):
    """Old code: `.finalize.lock` made every rerun log a false "embedded" and fail for an hour."""
    ds = make_ds()
    crashing = CountingExtractor(crash_on_call=3)
    with pytest.raises(KeyboardInterrupt):
        embed(ds, "text", crashing, root=tmp_path, shard_size=10, show_progress=False)
    folder = tmp_path / "toy" / "text" / next(p.name for p in (tmp_path / "toy" / "text").iterdir())
    _write_lock(folder / "locks" / "store.lock", pid=_dead_pid())
    _write_lock(folder / "locks" / "shard-000002.lock", pid=_dead_pid())
    ext = CountingExtractor()
    with caplog.at_level(logging.INFO, logger="utils"):
        store = embed(ds, "text", ext, root=tmp_path, shard_size=10, show_progress=False)
    assert store.is_complete() and ext.calls == 1
    assert not (folder / "locks").exists() or not list((folder / "locks").glob("*.lock"))
    assert "embedded 25 text rows" in caplog.text


def test_a_job_waits_for_a_shard_another_job_is_writing_and_reuses_it(tmp_path):
    import threading
    import time

    from utils.store import EmbeddingStore

    ds = make_ds(n=30)
    ref = embed(ds, "text", CountingExtractor(), root=tmp_path / "ref", shard_size=10, show_progress=False)
    store = embed(ds, "text", CountingExtractor(crash_on_call=99), root=tmp_path / "run", shard_size=10,
                  show_progress=False, num_shards=3, shard=2)  # shard 2 written, store open
    other = EmbeddingStore(store.folder)
    claim = other.claim(1)  # "another job" is computing shard 1
    done = {}

    def finish():
        time.sleep(0.6)
        ids, vec = ref.read()
        other.write_shard(1, ids[10:20].tolist(), np.asarray(vec[10:20]), {})
        claim.release()
        done["t"] = time.monotonic()

    threading.Thread(target=finish).start()
    ext = CountingExtractor()
    out = embed(ds, "text", ext, root=tmp_path / "run", shard_size=10, show_progress=False)
    assert ext.calls == 1 and "t" in done  # only shard 0: shard 1 was waited for, not computed twice
    np.testing.assert_array_equal(np.asarray(out.read()[1]), np.asarray(ref.read()[1]))


# ------------------------------------------------------------------------------- issue 12: integrity
def _zero_rows(folder, lo, hi):
    mm = np.load(folder / "vectors.npy", mmap_mode="r+")
    mm[lo:hi] = 0
    mm.flush()
    del mm


def test_same_size_damage_is_found_and_only_the_damaged_shard_recomputed(tmp_path, caplog):
    from utils.store import StoreIntegrityError

    ds = make_ds(n=47)
    store = embed(ds, "text", CountingExtractor(), root=tmp_path, shard_size=10, show_progress=False)
    good = store.aligned(ds.df.id)
    _zero_rows(store.folder, 21, 24)
    assert embed(ds, "text", CountingExtractor(), root=tmp_path, shard_size=10, show_progress=False).reused  # header ok
    with pytest.raises(StoreIntegrityError, match=r"shard\(s\) \[2\].*verify='full'") as e:
        store.aligned(ds.df.id)  # reading every row checks every byte
    assert e.value.shards == [2]
    report = store.verify()
    assert not report.ok and report.damaged_shards == [2] and "vectors.npy" in str(report)
    ext = CountingExtractor()
    with caplog.at_level(logging.WARNING, logger="utils"):
        embed(ds, "text", ext, root=tmp_path, shard_size=10, show_progress=False, verify="full")
    assert ext.calls == 1 and "repaired the rows of shard 2" in caplog.text
    np.testing.assert_array_equal(store.aligned(ds.df.id), good)
    assert store.verify().ok


def test_truncated_or_broken_files_name_the_file_and_the_fix(tmp_path):
    from utils.store import StoreIntegrityError

    ds = make_ds()
    store = embed(ds, "text", CountingExtractor(), root=tmp_path, shard_size=10, show_progress=False)
    vec = store.folder / "vectors.npy"
    data = vec.read_bytes()
    vec.write_bytes(data[:-40])
    with pytest.raises(StoreIntegrityError, match="vectors.npy: it is .* bytes, expected .*truncated"):
        store.read()
    again = embed(ds, "text", CountingExtractor(), root=tmp_path, shard_size=10, show_progress=False)
    assert vec.read_bytes() == data and not again.reused  # recomputed, bit-identical
    store.manifest_path.write_text(store.manifest_path.read_text()[:50])
    with pytest.raises(StoreIntegrityError, match="manifest.json is damaged.*overwrite=True"):
        embed(ds, "text", CountingExtractor(), root=tmp_path, shard_size=10, show_progress=False)


def test_damaged_shards_are_recomputed_before_the_merge(tmp_path):
    ds = make_ds(n=40)
    with pytest.raises(KeyboardInterrupt):
        embed(ds, "text", CountingExtractor(crash_on_call=4), root=tmp_path, shard_size=10, show_progress=False)
    folder = next((tmp_path / "toy" / "text").iterdir())
    np.save(folder / "shards" / "000001.npy", np.zeros((10, 6), np.float32))  # same size, other bytes
    (folder / "shards" / "000002.failed.json").write_text("{broken")
    ext = CountingExtractor()
    store = embed(ds, "text", ext, root=tmp_path, shard_size=10, show_progress=False)
    assert ext.calls == 3  # shard 3 was missing; 1 and 2 were damaged
    ref = embed(ds, "text", CountingExtractor(), root=tmp_path / "ref", shard_size=10, show_progress=False)
    np.testing.assert_array_equal(np.asarray(store.read()[1]), np.asarray(ref.read()[1]))


def test_nan_rows_are_refused_at_write_and_reported_at_read(tmp_path, caplog):
    from utils.store import EmbeddingStore

    store = EmbeddingStore(tmp_path / "s")
    store.open({"dataset": "d", "modality": "text", "extractor": {"id": "x"}, "fingerprint": "f", "count": 3,
                "shard_size": 3, "normalized": False})
    vec = np.ones((3, 2), np.float32)
    vec[1] = np.nan
    with pytest.raises(ValueError, match="NaN.*'b'"):
        store.write_shard(0, ["a", "b", "c"], vec, {})
    store.write_shard(0, ["a", "b", "c"], vec, {"b": "unreadable"})  # a failed row may hold anything
    store.finalize(1)
    _zero_rows(store.folder, 0, 0)
    # a NaN that got in (a store from an older version): reported, not dropped silently
    mm = np.load(store.folder / "vectors.npy", mmap_mode="r+")
    mm[1] = np.nan
    mm.flush()
    del mm
    m = store.manifest()
    from utils.store.files import checksum

    m["blocks"][0]["xxh3_128"] = checksum(np.load(store.folder / "vectors.npy").tobytes())
    store.manifest_path.write_text(json.dumps(m))
    with caplog.at_level(logging.WARNING, logger="utils"):
        out, nan_ids = store.lookup(["a", "b", "c"], missing="nan")
    assert nan_ids == ["c"] and "NaN" in caplog.text and np.isnan(out[2]).all() and np.isfinite(out[0]).all()
    np.testing.assert_array_equal(store.aligned(["a", "b", "c"], missing="nan"), out)
    assert not hasattr(store, "nan_ids")  # returned, not left on the store by the last read


def test_lookup_names_the_nan_rows_asked_for_whether_blocks_are_checked_or_not(tmp_path):
    """Issue 21: aligned() used to set ``store.nan_ids`` as a side effect, and the block-checking path listed
    every NaN row of the store, even rows not asked for. lookup() returns the NaN ids among those asked, in
    the order asked, the same on both paths."""
    from utils.store.files import checksum

    store = EmbeddingStore(tmp_path / "s")
    store.open({"dataset": "d", "modality": "text", "extractor": {"id": "x"}, "fingerprint": "f", "count": 4,
                "shard_size": 4, "normalized": False})
    store.write_shard(0, ["a", "b", "c", "d"], np.arange(8, dtype=np.float32).reshape(4, 2), {})
    store.finalize(1)
    mm = np.load(store.folder / "vectors.npy", mmap_mode="r+")
    mm[1, 0], mm[3, 1] = np.nan, np.inf  # rows b and d
    mm.flush()
    del mm
    m = store.manifest()
    m["blocks"][0]["xxh3_128"] = checksum(np.load(store.folder / "vectors.npy").tobytes())
    store.write_manifest(m)
    for verify in ("full", "header", "auto"):
        assert store.lookup(["d", "a", "b"], verify=verify).nan_ids == ["d", "b"], verify
        assert store.lookup(["a", "c"], verify=verify).nan_ids == [], verify  # b and d are not asked for
        vectors, nan_ids = store.lookup(["c", "a"], verify=verify)
        np.testing.assert_array_equal(vectors, [[4, 5], [0, 1]])


def test_full_disk_during_the_merge_is_a_clear_error_that_leaves_nothing(tmp_path):
    import errno

    import utils.store
    from utils.store import StoreSpaceError

    ds = make_ds()

    def full(stage):
        if stage == "merge.block":
            raise OSError(errno.ENOSPC, "No space left on device")

    utils.store.FAULT_HOOK = full
    try:
        with pytest.raises(StoreSpaceError, match=r"no space left on .* for .*vectors.npy: free [\d.]+ MB and run again"):
            embed(ds, "text", CountingExtractor(), root=tmp_path, shard_size=10, show_progress=False)
    finally:
        utils.store.FAULT_HOOK = None
    folder = next((tmp_path / "toy" / "text").iterdir())
    assert not list(folder.rglob("*.tmp")) and not list(folder.glob("locks/*.lock"))
    ext = CountingExtractor()
    assert embed(ds, "text", ext, root=tmp_path, shard_size=10, show_progress=False).is_complete() and ext.calls == 0


def test_free_space_is_checked_before_writing(tmp_path, monkeypatch):
    import utils.store.files as files
    from utils.store import StoreSpaceError

    monkeypatch.setattr(files, "free_bytes", lambda path: 100)
    with pytest.raises(StoreSpaceError, match="no space left on"):
        embed(make_ds(), "text", CountingExtractor(), root=tmp_path, shard_size=10, show_progress=False)


# ------------------------------------------------------------------ issue 11: precision is not identity
class PrecisionExtractor(CountingExtractor):
    resolved = "bf16"

    def __init__(self):
        super().__init__()
        self.options["precision"] = "auto"

    def resolved_precision(self, device=None):
        return type(self).resolved


def test_a_bf16_store_made_on_a_gpu_is_reused_on_a_laptop_and_shows_its_precision(tmp_path):
    ds = make_ds()
    store = embed(ds, "text", PrecisionExtractor(), root=tmp_path, shard_size=10, show_progress=False)
    assert store.precision == "bf16" and store.manifest()["precision"] == "bf16"
    PrecisionExtractor.resolved = "fp32"  # the laptop
    try:
        laptop = PrecisionExtractor()
        again = embed(ds, "text", laptop, root=tmp_path, shard_size=10, show_progress=False)
    finally:
        PrecisionExtractor.resolved = "bf16"
    assert again.reused and laptop.calls == 0 and again.precision == "bf16"
    other = CountingExtractor()
    other.options["precision"] = "fp32"  # an option the user set differs: another store, never mixed
    assert embed(ds, "text", other, root=tmp_path, shard_size=10, show_progress=False).folder != store.folder
    m = json.loads(store.manifest_path.read_text())
    m["extractor"]["options"]["precision"] = "fp16"
    store.manifest_path.write_text(json.dumps(m))
    with pytest.raises(StoreMismatchError, match="extractor"):
        embed(ds, "text", PrecisionExtractor(), root=tmp_path, shard_size=10, show_progress=False)


def test_a_store_of_an_older_format_is_refused_with_the_fix(tmp_path):
    """Issue 21: a format-1 store (no checksums) is no longer accepted and upgraded: embed, read and verify
    refuse it, naming the folder and overwrite=True, and leave it as it is; overwrite=True rebuilds it."""
    import re

    ds = make_ds()
    clean = embed(ds, "text", CountingExtractor(), root=tmp_path / "clean", shard_size=10, show_progress=False)
    store = embed(ds, "text", CountingExtractor(), root=tmp_path, shard_size=10, show_progress=False)
    m = store.manifest()
    for key in ("files", "blocks", "checksum", "fingerprint_detail"):
        m.pop(key)
    for version in (1, None):  # format 1, or no format field at all (what format-1 stores wrote)
        m.pop("format", None)
        if version is not None:
            m["format"] = version
        store.manifest_path.write_text(json.dumps(m))
        ext = CountingExtractor()
        with pytest.raises(StoreMismatchError, match=re.escape(str(store.folder)) + r" was written by an older "
                           r"version of this package \(store format 1.*overwrite=True"):
            embed(ds, "text", ext, root=tmp_path, shard_size=10, show_progress=False)
        assert ext.calls == 0 and json.loads(store.manifest_path.read_text()) == m  # not upgraded, not touched
        with pytest.raises(StoreMismatchError, match="older version"):
            store.read()
        report = store.verify()
        assert not report.ok and report.rebuild and "overwrite=True" in str(report)
    ext = CountingExtractor()
    again = embed(ds, "text", ext, root=tmp_path, shard_size=10, show_progress=False, overwrite=True)
    assert ext.calls == 3 and not again.reused and again.manifest()["format"] == 2 and again.verify().ok
    np.testing.assert_array_equal(again.aligned(ds.df["id"]), clean.aligned(ds.df["id"]))


def test_a_binary_manifest_names_the_file_and_the_repair(tmp_path):
    from utils.store import StoreIntegrityError

    ds = make_ds()
    store = embed(ds, "text", CountingExtractor(), root=tmp_path, shard_size=10, show_progress=False)
    store.manifest_path.write_bytes(bytes(range(256)) * 4)  # not text at all: used to be a raw UnicodeDecodeError
    with pytest.raises(StoreIntegrityError, match=r"manifest.json is damaged \(not UTF-8.*overwrite=True.*rm -r"):
        embed(ds, "text", CountingExtractor(), root=tmp_path, shard_size=10, show_progress=False)
    store.manifest_path.write_text("[1, 2, 3]")  # JSON, but not an object
    with pytest.raises(StoreIntegrityError, match="JSON list, expected an object"):
        store.manifest()
    again = embed(ds, "text", CountingExtractor(), root=tmp_path, shard_size=10, show_progress=False, overwrite=True)
    assert again.is_complete() and not again.reused


MUTATIONS = ("flip", "truncate", "zero", "binary", "empty", "append")


def _mutate(path, kind, rng):
    data = path.read_bytes()
    if kind == "flip" and data:
        b = bytearray(data)
        for i in rng.choice(len(b), size=min(len(b), int(rng.integers(1, 4))), replace=False):
            b[i] ^= 1 << int(rng.integers(8))
        data = bytes(b)
    elif kind == "truncate":
        data = data[: int(rng.integers(0, max(len(data), 1)))]
    elif kind == "zero" and data:
        lo = int(rng.integers(len(data)))
        data = data[:lo] + bytes(min(16, len(data) - lo)) + data[lo + 16:]
    elif kind == "binary":
        data = rng.integers(0, 256, size=max(len(data), 8), dtype=np.uint8).tobytes()
    elif kind == "empty":
        data = b""
    elif kind == "append":
        data = data + b"\x00junk"
    path.write_bytes(data)


@pytest.mark.parametrize("seed", range(4))
def test_fuzzed_store_files_give_the_clean_vectors_or_a_clear_error(tmp_path, seed):
    """Seeded random mutations (bit flips, truncations, zeroed runs, random bytes, empty files, trailing junk) of
    every file a finished or a half-finished store holds. Each outcome is the clean run's vectors, bit for bit,
    or the store's own error naming the file; never a raw decoding / numpy / JSON error, never other vectors."""
    from utils.store import StoreBusyError, StoreIntegrityError

    store_errors = (StoreIntegrityError, StoreMismatchError, IncompleteStoreError, StoreBusyError)
    rng = np.random.default_rng(seed)
    ds = make_ds(n=30)
    clean = embed(ds, "text", CountingExtractor(), root=tmp_path / "clean", shard_size=10, show_progress=False).read()
    outcomes = {"identical": 0, "refused": 0}
    for case in range(30):
        root = tmp_path / f"c{case}"
        half = case % 3 == 0  # a killed run: shard files on disk, no consolidated vectors yet
        ext = CountingExtractor(crash_on_call=2) if half else CountingExtractor()
        try:
            store = embed(ds, "text", ext, root=root, shard_size=10, show_progress=False)
        except KeyboardInterrupt:
            store = EmbeddingStore(next(p.parent for p in root.rglob("manifest.json")))
        files = sorted(p for p in store.folder.rglob("*") if p.is_file() and "locks" not in p.parts)
        target = files[int(rng.integers(len(files)))]
        kind = MUTATIONS[int(rng.integers(len(MUTATIONS)))]
        _mutate(target, kind, rng)
        try:
            got = embed(ds, "text", CountingExtractor(), root=root, shard_size=10, show_progress=False, verify="full").read()
        except store_errors as e:
            assert target.name in str(e) or str(store.folder) in str(e), (target.name, kind, str(e))
            outcomes["refused"] += 1
            continue
        assert np.array_equal(got[0], clean[0]) and np.array_equal(got[1], clean[1]), (target.name, kind)
        outcomes["identical"] += 1
    assert outcomes["identical"] > 0  # most damage is repaired, not only refused


def test_one_shards_files_copied_over_anothers_are_recomputed_not_merged(tmp_path):
    """Issue 20: shard 0's files (checksums and all) copied over shard 1's gave a "complete" store with duplicate
    ids that verify passed; 41% of rows were then dropped from training. The shard number in each header and
    the ids across shards are checked at the merge, and verify checks ids are unique."""
    import shutil

    ds = make_ds(n=30)
    clean = embed(ds, "text", CountingExtractor(), root=tmp_path / "clean", shard_size=10, show_progress=False).read()
    root = tmp_path / "copied"
    with pytest.raises(KeyboardInterrupt):
        embed(ds, "text", CountingExtractor(crash_on_call=3), root=root, shard_size=10, show_progress=False)
    store = EmbeddingStore(next(p.parent for p in root.rglob("manifest.json")))
    for suffix in (".npy", ".ids.npy", ".failed.json", ".meta.json"):
        shutil.copyfile(store.shard_file(0, suffix), store.shard_file(1, suffix))
    assert "belongs to shard 0" in store.check_shard(1, full=True)
    ext = CountingExtractor()
    got = embed(ds, "text", ext, root=root, shard_size=10, show_progress=False).read()
    assert np.array_equal(got[0], clean[0]) and np.array_equal(got[1], clean[1])
    assert ext.calls == 2  # shard 1 (the copy) and shard 2 (never written) recomputed; shard 0 kept

    # a finished store whose ids were made to repeat (with a checksum that agrees) is refused by verify
    from utils.store.files import npy_writer, write_file

    done = embed(ds, "text", CountingExtractor(), root=root, shard_size=10, show_progress=False)
    ids = np.load(done.folder / "ids.npy")
    ids[5] = ids[4]
    size, digest = write_file(done.folder / "ids.npy", npy_writer(ids))
    m = done.manifest()
    m["files"]["ids.npy"] = {"size": size, "sha256": digest} if "sha256" in m["files"]["ids.npy"] else {
        "size": size, **{k: digest for k in m["files"]["ids.npy"] if k != "size"}}
    done.write_manifest(m)
    report = done.verify(full=True)
    assert not report.ok and "appear more than once" in " ".join(report.problems) and report.rebuild


def test_two_jobs_creating_one_store_cannot_both_write_its_manifest(tmp_path, monkeypatch):
    """Issue 20: two jobs starting together on an empty store with other options both found no manifest and
    both wrote one; the store ended with 200 rows of each under one manifest and verify said ok. Creation is
    exclusive now: the job that loses the race compares against the winner's manifest and is refused."""
    ds = make_ds(n=30)
    made = embed(ds, "text", CountingExtractor(), root=tmp_path / "made", shard_size=10, show_progress=False)
    header = {k: v for k, v in made.manifest().items() if k in ("dataset", "modality", "extractor", "fingerprint",
                                                                  "n_rows", "normalized", "format")}
    first = EmbeddingStore(tmp_path / "empty")
    first.open(header)  # the first job has created the store and not written a shard yet
    other = {**header, "fingerprint": "edited-input"}
    late = EmbeddingStore(first.folder)
    monkeypatch.setattr(EmbeddingStore, "exists", lambda self: False)  # it checked before the first job wrote
    with pytest.raises(StoreMismatchError, match="holds embeddings of something else"):
        late.open(other)
    monkeypatch.undo()
    assert first.manifest()["fingerprint"] == header["fingerprint"]


def _race_job(root, normalize, barrier, out):
    barrier.wait()
    try:
        store = embed(make_ds(n=60), "text", CountingExtractor(), root=root, shard_size=5, show_progress=False,
                      normalize=normalize)
        out.put(("ok", normalize, str(store.folder)))
    except Exception as e:  # noqa: BLE001 -- reported to the parent
        out.put((type(e).__name__, normalize, str(e)))


@pytest.mark.parametrize("attempt", range(3))
def test_two_processes_racing_on_an_empty_store_never_mix_vectors(tmp_path, attempt):
    import multiprocessing as mp

    ctx = mp.get_context("fork")
    clean = {nz: embed(make_ds(n=60), "text", CountingExtractor(), root=tmp_path / f"clean{nz}", shard_size=5,
                       show_progress=False, normalize=nz).read() for nz in (False, True)}
    barrier, out = ctx.Barrier(2), ctx.Queue()
    jobs = [ctx.Process(target=_race_job, args=(tmp_path / "shared", nz, barrier, out)) for nz in (False, True)]
    for j in jobs:
        j.start()
    results = [out.get(timeout=120) for _ in jobs]
    for j in jobs:
        j.join(timeout=60)
    for status, nz, detail in results:
        assert status in ("ok", "StoreMismatchError"), (status, detail)
        if status == "ok":  # whoever finished has its own vectors, every row of them
            got = EmbeddingStore(detail).read()
            same_folder_other = [r for r in results if r[0] == "ok" and r[1] != nz and r[2] == detail]
            assert not same_folder_other
            assert np.array_equal(got[0], clean[nz][0]) and np.array_equal(got[1], clean[nz][1])
    assert any(r[0] == "ok" for r in results)


def test_a_local_model_whose_weights_changed_in_place_does_not_reuse_old_vectors(tmp_path):
    """Issue 20: hf:/path/model with its weights edited and saved in place reused the old vectors ("reusing
    cached"; cosine -0.03 with what the model now gives): only the path was in the store's identity."""
    import torch
    from transformers import BertModel

    from utils import extractors
    from utils.store import StoreMismatchError

    from .conftest import make_tiny_bert

    folder = make_tiny_bert(tmp_path / "model")
    ds = make_ds(n=12)
    first = embed(ds, "text", extractors.create(f"hf:{folder}"), root=tmp_path / "emb", show_progress=False)
    before = np.array(first.read()[1])
    again = embed(ds, "text", extractors.create(f"hf:{folder}"), root=tmp_path / "emb", show_progress=False)
    assert again.reused  # untouched weights: the vectors are reused
    torch.manual_seed(5)
    BertModel(BertModel.from_pretrained(folder).config).save_pretrained(folder)  # the same path, other weights
    with pytest.raises(StoreMismatchError, match="its local weights changed"):
        embed(ds, "text", extractors.create(f"hf:{folder}"), root=tmp_path / "emb", show_progress=False)
    fresh = embed(ds, "text", extractors.create(f"hf:{folder}"), root=tmp_path / "emb", show_progress=False,
                  overwrite=True)
    assert not fresh.reused
    assert not np.allclose(fresh.read()[1], before)
    # content mode: a copy of the folder that does not keep times still has the same fingerprint
    import shutil

    ext = extractors.create(f"hf:{folder}")
    a = ext.weights_fingerprint("content")
    shutil.copytree(folder, tmp_path / "copy")
    os.utime(next((tmp_path / "copy").glob("*.safetensors")), (1, 1))
    assert extractors.create(f"hf:{tmp_path / 'copy'}").weights_fingerprint("content") == a
    assert extractors.create(f"hf:{tmp_path / 'copy'}").weights_fingerprint("stat") != ext.weights_fingerprint("stat")
    assert extractors.create("hf:sentence-transformers/all-MiniLM-L6-v2").weights_fingerprint() is None
