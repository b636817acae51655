"""The embedding store: atomic shards, resume after a crash, reuse, refusal to mix, sliced jobs."""

from __future__ import annotations

import json
import logging

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


def test_store_of_other_inputs_is_refused_never_mixed(tmp_path):
    ds = make_ds()
    embed(ds, "text", CountingExtractor(), root=tmp_path, shard_size=10, show_progress=False)
    changed = make_ds()
    changed.df.loc[4, "text"] = "edited"
    with pytest.raises(StoreMismatchError, match="fingerprint"):
        embed(changed, "text", CountingExtractor(), root=tmp_path, shard_size=10, show_progress=False)
    store = embed(changed, "text", CountingExtractor(), root=tmp_path, shard_size=10, show_progress=False, overwrite=True)
    assert store.manifest()["fingerprint"] == changed.fingerprint("text")
    # a manifest written by another extractor in the same folder is refused too
    m = json.loads(store.manifest_path.read_text())
    m["extractor"]["id"] = "fake:other"
    store.manifest_path.write_text(json.dumps(m))
    with pytest.raises(StoreMismatchError, match="extractor"):
        embed(changed, "text", CountingExtractor(), root=tmp_path, shard_size=10, show_progress=False)


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
