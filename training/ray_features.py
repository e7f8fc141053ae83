"""The projection head's features computed on Ray Data (``train projection --ray [--address ...]``).

The rows a :class:`~training.features.FeatureCache` lacks go through ``map_batches`` over a pool of
actors, each holding one encoder (CLIP's image or text tower, or CLAP's text tower) loaded once, on a
GPU of its own where the cluster has GPUs. The vectors come back to this process and go into the same
cache, under the same model fingerprint and row keys as the single-process path, saved as they come:
a rerun, with or without Ray, computes only what is new.
"""

from __future__ import annotations

import pickle
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from tqdm import tqdm

from image2mood.config import Settings
from image2mood.errors import ImageError
from training.data import Dataset, Pair, load_image
from training.features import SAVE_EVERY, FeatureCache

KINDS = ("clip-image", "clip-text", "clap-text")


class Encoder:
    """A Ray actor: one encoder model, loaded once, applied batch by batch. Image rows that will not
    load come back with an empty vector and the reason."""

    def __init__(self, settings: Settings, kind: str) -> None:
        import torch

        import image2mood.models._torchvision  # noqa: F401  (the torchvision guard, in the actor's process)
        from image2mood.models import factory

        if torch.cuda.is_available():
            settings = settings.model_copy(update={"device": "cuda"})
        self.kind = kind
        encoder = factory.clap_encoder(settings) if kind == "clap-text" else factory.image_encoder(settings)
        self.encode = encoder.encode_images if kind == "clip-image" else encoder.encode_text

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, Any]:
        inputs, broken = [], []
        for item in batch["item"]:
            if self.kind != "clip-image":
                inputs.append(str(item))
                broken.append("")
                continue
            pair: Pair = pickle.loads(item)
            try:
                inputs.append(load_image(pair))
                broken.append("")
            except ImageError as exc:
                broken.append(str(exc))
        vectors = np.asarray(self.encode(inputs), dtype=np.float32) if inputs else np.zeros((0, 1), np.float32)
        full = iter(vectors)
        width = vectors.shape[1]
        return {"key": batch["key"], "row": batch["row"], "broken": np.array(broken, dtype=object),
                "vector": np.stack([np.zeros(width, np.float32) if why else next(full) for why in broken])}


def connect(address: str | None) -> None:
    """Join the Ray cluster at ``address`` ("auto": the one this machine belongs to), or the one this
    process already started; without either, start a local one."""
    import ray

    if not ray.is_initialized():
        ray.init(address=address, include_dashboard=False, log_to_driver=False)


def fill_on_ray(cache: FeatureCache, dataset: Dataset, items: Sequence[Pair], key: Callable[[Pair], str],
                kind: str, settings: Settings, batch_size: int, address: str | None = None) -> int:
    """Compute the vectors of ``items`` that ``cache`` lacks on Ray and store them; broken images are
    counted in ``dataset.broken`` (and tried again next time, as on one process). Returns how many
    vectors were computed."""
    import ray

    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, not {kind!r}")
    missing = {key(pair): pair for pair in items if key(pair) not in cache.vectors}
    if not missing:
        return 0
    connect(address)
    resources = ray.cluster_resources()
    gpus = int(resources.get("GPU", 0))
    actors = gpus or max(1, int(resources.get("CPU", 1)) // 2)
    rows = [{"key": k, "row": pair.row,
             "item": pickle.dumps(pair) if kind == "clip-image" else pair.caption} for k, pair in missing.items()]
    vectors = ray.data.from_items(rows).map_batches(
        Encoder, fn_constructor_kwargs={"settings": settings, "kind": kind}, batch_size=batch_size,
        concurrency=actors, num_gpus=1 if gpus else 0, num_cpus=1, batch_format="numpy")
    with tqdm(total=len(rows), desc=f"{kind} on Ray ({actors} actors)", unit="row", mininterval=1,
              dynamic_ncols=True) as bar:
        for number, batch in enumerate(vectors.iter_batches(batch_size=batch_size, batch_format="numpy"), 1):
            for k, row, why, vector in zip(batch["key"], batch["row"], batch["broken"], batch["vector"]):
                if why:
                    dataset.broken[int(row)] = str(why)
                else:
                    cache.vectors[str(k)] = np.asarray(vector, dtype=np.float32)
            bar.update(len(batch["key"]))
            if number % SAVE_EVERY == 0:
                cache.save()
    cache.save()
    return len(rows) - sum(1 for k in missing if k not in cache.vectors)
