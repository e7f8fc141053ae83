"""A model's identity by its files, not its name: the same weights moved, copied into Docker or reached
through the hub cache keep it; other weights do not.

It is cheap (a store checks it each time it opens): the config, and the first MiB of each weights
file (a safetensors file's header of tensor names, shapes and offsets, then its first tensors), never
the gigabytes behind them.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from image2mood.config import ModelKind
from image2mood.models.resolve import WEIGHT_PATTERNS, ResolvedModel, resolve_model

CONFIG_FILES = ("open_clip_config.json", "config.json")
HEAD_BYTES = 1 << 20
"""How much of each weights file is read."""


def model_fingerprint(resolved: ResolvedModel) -> str:
    """A short content hash of a model folder: its config files and the start of each weights file
    (and, for any file after the first, its name and size)."""
    digest = hashlib.sha256()
    for name in CONFIG_FILES:
        if (resolved.folder / name).is_file():
            digest.update((resolved.folder / name).read_bytes())
    weights = sorted(p for pattern in WEIGHT_PATTERNS for p in resolved.folder.glob(pattern))
    for i, path in enumerate(weights):
        if i:  # a sharded model's further files (a single file is hashed as fingerprints always were)
            digest.update(f"{path.name}:{path.stat().st_size}".encode())
        digest.update(_file_head(path))
    return digest.hexdigest()[:16]


def spec_fingerprint(kind: ModelKind, spec: str) -> str:
    """The fingerprint of the model ``spec`` names, found as configured models are, but never
    downloaded; raises ModelNotFoundError when it is not here."""
    return model_fingerprint(resolve_model(kind, spec, download=False))


def _file_head(path: Path) -> bytes:
    """The first MiB of a weights file; when a safetensors header fills it, the first MiB after the
    header too (else two files of one architecture would look alike)."""
    with path.open("rb") as fh:
        head = fh.read(HEAD_BYTES)
        if path.suffix == ".safetensors" and len(head) >= 8:
            data_start = 8 + int.from_bytes(head[:8], "little")
            if data_start >= HEAD_BYTES:
                fh.seek(data_start)
                head += fh.read(HEAD_BYTES)
    return head
