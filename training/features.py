"""Embeddings computed once and cached on disk, keyed by the model's fingerprint and the row.

A cache file (``.npz``) holds the fingerprint and spec of the model that built it, the row keys
(an image's path or bytes hash, a caption's hash) and one float32 vector per key. A run adds the
rows it is missing and saves as it goes, so an interrupted run picks up where it stopped; a file
built by another model is refused with the fix, never mixed in.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TypeVar

import numpy as np
from tqdm import tqdm

from image2mood.errors import Image2MoodError

T = TypeVar("T")
SAVE_EVERY = 20  # batches between saves while a cache grows


class CacheMismatchError(Image2MoodError):
    """A cache file on disk was built by another model than the one configured now."""


class FeatureCache:
    """The vectors of one model for one kind of input (e.g. CLIP images), in one ``.npz`` file."""

    def __init__(self, path: Path, fingerprint: str, spec: str) -> None:
        self.path, self.fingerprint, self.spec = path, fingerprint, spec
        self.vectors: dict[str, np.ndarray] = {}
        if path.is_file():
            with np.load(path, allow_pickle=False) as data:
                built_by, built_spec = str(data["fingerprint"]), str(data["spec"])
                if built_by != fingerprint:
                    raise CacheMismatchError(
                        f"feature cache {path} was built by model {built_spec!r} (fingerprint {built_by}), not "
                        f"the configured {spec!r} ({fingerprint}); delete it or give another --cache folder")
                self.vectors = dict(zip(data["keys"].tolist(), data["vectors"]))

    def save(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        keys = list(self.vectors)
        vectors = np.stack([self.vectors[k] for k in keys]).astype(np.float32) if keys else np.zeros((0, 0), np.float32)
        partial = self.path.with_name(self.path.name + ".partial.npz")
        np.savez(partial, fingerprint=self.fingerprint, spec=self.spec, keys=np.array(keys, dtype=str),
                 vectors=vectors)
        partial.replace(self.path)

    def fill(self, items: Sequence[T], key: Callable[[T], str], load: Callable[[T], object | None],
             encode: Callable[[list], np.ndarray], batch_size: int, desc: str) -> None:
        """Compute and store the vectors of ``items`` not cached yet. ``load`` turns an item into the
        encoder's input, or None for an item to skip (a broken image, counted by the caller)."""
        missing = list({key(item): item for item in items if key(item) not in self.vectors}.items())
        if not missing:
            return
        with tqdm(total=len(missing), desc=desc, unit="row", mininterval=1, dynamic_ncols=True) as bar:
            for number, start in enumerate(range(0, len(missing), batch_size), 1):
                batch = [(k, load(item)) for k, item in missing[start:start + batch_size]]
                batch = [(k, x) for k, x in batch if x is not None]
                if batch:
                    vectors = encode([x for _, x in batch])
                    self.vectors.update(zip((k for k, _ in batch), vectors.astype(np.float32)))
                bar.update(min(batch_size, len(missing) - start))
                if number % SAVE_EVERY == 0:
                    self.save()
        self.save()

    def matrix(self, keys: Sequence[str]) -> np.ndarray:
        """The cached vectors of ``keys``, in order, as one float32 matrix."""
        return np.stack([self.vectors[k] for k in keys]).astype(np.float32)
