"""engine="ray": Ray Data in local mode (2 CPUs, 2 actors) fills the same store as the single-process path.

Ray starts once for the module; every extractor is tiny. What is checked: vectors equal the local path's
exactly (CPU); a Ray-made store is reused by the local path and a half-made local store is finished by Ray;
an actor killed mid-run is restarted and its shard retried; an extractor error fails the job after every
other shard is written, and a rerun (here by the local path) computes only the rest.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from utils.data import DatasetSpec, MultimodalDataset
from utils.distributed import RayConfig, ShardError, pool_size, ray_config
from utils.embed import EmbedConfig, embed
from utils.extractors.base import Extractor

RAY = RayConfig(actors=2, num_cpus=1)


class Fake(Extractor):
    """A deterministic text extractor whose behaviour is steered by instance attributes (not options, so
    the store's identity does not change): ``log_dir`` gets one file per encoded shard, ``die_on`` kills the
    actor process once when that item is in the batch, ``fail_on`` raises when it is."""

    family, modality = "fake", "text"
    log_dir = die_on = fail_on = None

    def _encode(self, items, batch_size, device, show_progress, on_error):
        if self.die_on in items and not (Path(self.log_dir) / "died").exists():
            (Path(self.log_dir) / "died").write_text(str(os.getpid()))
            os._exit(1)  # the actor process dies without cleanup, like a SIGKILL or an OOM kill
        if self.fail_on in items and not (Path(self.log_dir) / "fixed").exists():
            raise ValueError(f"cannot read {self.fail_on}")
        if self.log_dir:
            (Path(self.log_dir) / f"{items[0]}.{os.getpid()}").write_text("")
        return np.array([[len(t), sum(map(ord, t)) % 97, i % 5, 1.0] for i, t in enumerate(items)], np.float32)


def make_ds(n=45, name="dist"):
    df = pd.DataFrame({"id": [f"r{i}" for i in range(n)], "text": [f"row {i} " + "word " * (i % 7) for i in range(n)],
                       "label": ["a", "b", "c"] * (n // 3), "split": "train"})
    return MultimodalDataset(df, DatasetSpec(name=name, task="multiclass", classes=["a", "b", "c"], modalities=["text"]))


@pytest.fixture(scope="module", autouse=True)
def ray_local():
    ray = pytest.importorskip("ray")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, object_store_memory=200 * 2**20)
    yield ray
    ray.shutdown()


def test_ray_vectors_equal_the_local_path_exactly_and_the_stores_are_interchangeable(tmp_path, tiny_bert):
    from utils.extractors import create

    ds = make_ds(45)
    opts = dict(shard_size=10, batch_size=4, device="cpu", show_progress=False)
    local = embed(ds, "text", create(f"hf:{tiny_bert}"), root=tmp_path / "local", **opts)
    remote = embed(ds, "text", create(f"hf:{tiny_bert}"), root=tmp_path / "ray", engine="ray", ray=RAY, **opts)
    a, b = local.read(), remote.read()
    assert a[0].tolist() == b[0].tolist() == ds.df.id.tolist()
    np.testing.assert_array_equal(np.asarray(a[1]), np.asarray(b[1]))  # bit for bit
    ma, mb = local.manifest(), remote.manifest()
    assert {k: ma[k] for k in ("extractor", "fingerprint", "count", "dim", "description")} == \
           {k: mb[k] for k in ("extractor", "fingerprint", "count", "dim", "description")}
    assert "pooling=mean" in mb["description"]  # the actors' loaded description, not the driver's "auto"
    # the local path reuses the Ray-made store without loading the model
    again = embed(ds, "text", create(f"hf:{tiny_bert}"), root=tmp_path / "ray", **opts)
    assert again.reused


def test_ray_finishes_a_store_the_local_path_started(tmp_path):
    ds = make_ds(45)
    (tmp_path / "log").mkdir()
    ext = Fake("m")
    ext.log_dir = str(tmp_path / "log")
    ext.fail_on = ds.items("text")[20]  # shard 2 of 5 fails in the local run
    with pytest.raises(ValueError, match="cannot read"):
        embed(ds, "text", ext, root=tmp_path / "s", shard_size=10, show_progress=False)
    shard_dir = tmp_path / "s" / "dist" / "text" / "fake_m" / "shards"
    assert sorted(p.name for p in shard_dir.glob("*[0-9].npy")) == ["000000.npy", "000001.npy"]
    (tmp_path / "log" / "fixed").write_text("")
    for f in (tmp_path / "log").glob("row*"):
        f.unlink()
    store = embed(ds, "text", ext, root=tmp_path / "s", shard_size=10, show_progress=False, engine="ray", ray=RAY)
    computed = sorted(f.name.split(".")[0] for f in (tmp_path / "log").glob("row*"))
    assert computed == sorted(ds.items("text")[i] for i in (20, 30, 40))  # shards 2, 3, 4 only
    ref = embed(ds, "text", Fake("m"), root=tmp_path / "ref", shard_size=10, show_progress=False)
    np.testing.assert_array_equal(np.asarray(store.read()[1]), np.asarray(ref.read()[1]))


def test_a_killed_actor_is_restarted_and_its_shard_retried(tmp_path):
    ds = make_ds(45)
    (tmp_path / "log").mkdir()
    ext = Fake("m")
    ext.log_dir = str(tmp_path / "log")
    ext.die_on = ds.items("text")[30]
    store = embed(ds, "text", ext, root=tmp_path / "s", shard_size=10, show_progress=False, engine="ray", ray=RAY)
    assert (tmp_path / "log" / "died").exists()  # an actor did die mid-run ...
    assert store.is_complete()  # ... and the job finished anyway
    ref = embed(ds, "text", Fake("m"), root=tmp_path / "ref", shard_size=10, show_progress=False)
    np.testing.assert_array_equal(np.asarray(store.read()[1]), np.asarray(ref.read()[1]))


def test_an_extractor_error_keeps_the_other_shards_and_a_rerun_computes_only_the_rest(tmp_path):
    ds = make_ds(45)
    (tmp_path / "log").mkdir()
    ext = Fake("m")
    ext.log_dir = str(tmp_path / "log")
    ext.fail_on = ds.items("text")[40]  # the last shard fails
    cfg = EmbedConfig(root=str(tmp_path / "s"), shard_size=10, show_progress=False, engine="ray", ray=RAY)
    with pytest.raises(ShardError, match="ValueError: cannot read row 40") as info:
        embed(ds, "text", ext, cfg)
    assert "running again resumes" in str(info.value)
    shard_dir = tmp_path / "s" / "dist" / "text" / "fake_m" / "shards"
    done = sorted(p.name for p in shard_dir.glob("*[0-9].npy"))
    assert done == [f"{k:06d}.npy" for k in range(4)]  # every other shard was still computed and written
    (tmp_path / "log" / "fixed").write_text("")
    for f in (tmp_path / "log").glob("row*"):
        f.unlink()
    store = embed(ds, "text", ext, cfg, engine="local")  # the local path finishes the Ray-made store
    assert store.is_complete()
    assert [f.name.split(".")[0] for f in (tmp_path / "log").glob("row*")] == [ds.items("text")[40]]  # shard 4 only


def test_ray_options_are_checked_before_any_work():
    with pytest.raises(TypeError, match="unknown option.*actorz"):
        ray_config({"actorz": 2})
    with pytest.raises(ValueError, match="actors must be"):
        RayConfig(actors=0)
    with pytest.raises(ValueError, match="engine must be one of"):
        EmbedConfig(engine="spark")
    from utils.experiment.steps import extract_embeddings

    with pytest.raises(ValueError, match="engine must be one of"):  # the notebooks' step passes engine through
        extract_embeddings(make_ds(), {"text": "minilm-offline"}, engine="spark", for_training=False)
    with pytest.raises(ValueError, match="has 0 GPU"):
        pool_size(RayConfig(num_gpus=1), {"CPU": 8.0})
    assert pool_size(RayConfig(actors=4, num_cpus=2), {"CPU": 4.0}) == 2  # fewer actors fit: a warning, not a hang
    assert pool_size(RayConfig(actors=4, num_gpus=1, num_cpus=4), {"CPU": 64.0, "GPU": 8.0}) == 4
