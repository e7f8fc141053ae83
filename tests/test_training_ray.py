"""`train projection --ray`: the head's features computed by a pool of encoder actors on a local Ray
cluster equal the single-process cache's, go into the same cache files, and a rerun computes none."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import ray

from image2mood.config import Settings
from image2mood.models.fingerprint import model_fingerprint
from image2mood.models.resolve import resolve_model
from media_shards import sample_rows, write_img2dataset
from training.data import read_pairs
from training.features import FeatureCache
from training.projection import HeadConfig, train_projection
from training.ray_features import fill_on_ray

TOLERANCE = 1e-5


@pytest.fixture(scope="module")
def cluster():
    ray.init(num_cpus=2, include_dashboard=False, object_store_memory=200 * 1024**2, log_to_driver=False)
    yield
    ray.shutdown()


def _caches(folder: Path, settings: Settings) -> dict[str, FeatureCache]:
    models = {kind: resolve_model(kind, settings.model_spec(kind)) for kind in ("clip", "clap")}
    return {name: FeatureCache(folder / f"{name}.npz", model_fingerprint(models[name.split("-")[0]]),
                               models[name.split("-")[0]].spec) for name in ("clip-image", "clap-text")}


def test_ray_features_equal_the_single_process_cache_and_a_rerun_computes_none(
        cluster, settings: Settings, tmp_path: Path) -> None:
    data = write_img2dataset(tmp_path / "wds", sample_rows(shards=2, per_shard=6), "webdataset")
    config = HeadConfig(epochs=2, batch_size=4, hidden=0)
    single = read_pairs(data)
    train_projection(single, settings, tmp_path / "one.pt", mode="image-caption", cache=tmp_path / "one",
                     config=config, progress=False)
    on_ray = read_pairs(data)
    trained = train_projection(on_ray, settings, tmp_path / "ray.pt", mode="image-caption", cache=tmp_path / "ray",
                               config=config, progress=False, on_ray=True)
    assert len(trained.valid) >= 1 and (tmp_path / "ray.pt").is_file()
    assert sorted(on_ray.broken) == sorted(single.broken) == [5, 11]  # one broken member in each shard

    expected, got = _caches(tmp_path / "one", settings), _caches(tmp_path / "ray", settings)
    for name in expected:
        assert set(got[name].vectors) == set(expected[name].vectors), name
        assert len(got[name].vectors) == (10 if name == "clip-image" else len({p.caption for p in single.pairs}))
        worst = max(float(np.abs(got[name].vectors[k] - v).max()) for k, v in expected[name].vectors.items())
        assert worst <= TOLERANCE, (name, worst)

    cache = got["clip-image"]
    assert fill_on_ray(cache, on_ray, on_ray.pairs, lambda p: p.image_key, "clip-image", settings, 4) == 0
    dropped = sorted(cache.vectors)[:3]
    for key in dropped:
        del cache.vectors[key]
    assert fill_on_ray(cache, on_ray, on_ray.pairs, lambda p: p.image_key, "clip-image", settings, 4) == 3
    reopened = _caches(tmp_path / "ray", settings)["clip-image"]  # saved, under the same fingerprint and keys
    assert all(np.abs(reopened.vectors[k] - expected["clip-image"].vectors[k]).max() <= TOLERANCE for k in dropped)
