"""Query vectors cached on disk, so a sweep runs BLIP and CLIP once per photo, ever.

A photo's entry (its BLIP caption, CLIP image vector and the moods its faces pull towards) is keyed
by the photo's content hash and the fingerprints of the BLIP and CLIP models and the face models (and
the caption length); a text's vector by the text and the fingerprint of the model that embedded it.
Another model, or a changed photo, is simply a miss. Models load only on a miss.

Layout: ``DIR/photo-<fp>/<sha256>.npz``, ``DIR/clap-text-<fp>/<sha256>.npy``, ``DIR/clip-text-<fp>/…``.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import numpy as np

from image2mood.config import ModelKind, Settings
from image2mood.faces.reader import Face, FaceModels, mood_weights
from image2mood.images import load_configured_photo
from image2mood.models import factory
from image2mood.models.fingerprint import model_fingerprint
from image2mood.models.resolve import resolve_model
from image2mood.faces.zero_shot import FaceReader


@dataclass(frozen=True)
class PhotoVectors:
    caption: str
    clip: np.ndarray  # L2-normalised CLIP image vector
    face_moods: dict[str, float]  # mood key → how strongly the photo's faces pull towards it


@dataclass
class CacheStats:
    """How many entries came from disk and how many were computed, per kind."""

    hits: dict[str, int] = field(default_factory=dict)
    computed: dict[str, int] = field(default_factory=dict)

    def count(self, kind: str, hit: bool, n: int = 1) -> None:
        if n:
            counter = self.hits if hit else self.computed
            counter[kind] = counter.get(kind, 0) + n


def _digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _atomic_write(path: Path, write: Callable[[object], None]) -> None:
    """Write through a temporary file in the same folder, so a reader never sees half an entry."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".part")
    try:
        with os.fdopen(fd, "wb") as fh:
            write(fh)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


class QueryCache:
    """Captions, CLIP image vectors and CLAP/CLIP text vectors for one model configuration."""

    def __init__(self, settings: Settings, folder: Path) -> None:
        self.settings, self.folder = settings, Path(folder).expanduser()
        self.stats = CacheStats()

    def _fingerprint(self, kind: ModelKind) -> str:
        return model_fingerprint(resolve_model(kind, self.settings.model_spec(kind)))

    def _faces_fingerprint(self) -> str:
        """The face models' files by name and size ("none" without them: CLIP's reading stands in)."""
        folder = self.settings.faces_folder()
        files = sorted((p.relative_to(folder).as_posix(), p.stat().st_size)
                       for p in folder.rglob("*") if p.is_file()) if folder.is_dir() else []
        return _digest(json.dumps(files).encode())[:16] if files else "none"

    @cached_property
    def _photo_dir(self) -> Path:
        key = (f"{self._fingerprint('blip')}|{self._fingerprint('clip')}|{self.settings.caption_tokens}|"
               f"{self.settings.caption_image_size}|{self.settings.precision}|"
               f"{self._faces_fingerprint()}|{self.settings.face_min_size}")
        return self.folder / f"photo-{_digest(key.encode())[:16]}"

    @property
    def _face_models(self) -> FaceModels | None:
        return factory.face_models(self.settings)

    def _faces(self, image, clip: np.ndarray) -> list[Face]:
        """The photo's faces as the product reads them: the face models, else CLIP's zero-shot reading."""
        if self._face_models is not None:
            return self._face_models.read(image)
        reading = FaceReader(self.clip_text).read(clip)
        return [] if reading is None else [Face.from_reading(reading)]

    def photo(self, path: Path) -> PhotoVectors:
        """Caption and CLIP vector of a photo file: from the cache, or computed once and stored."""
        data = Path(path).read_bytes()
        entry = self._photo_dir / f"{_digest(data)}.npz"
        if entry.is_file():
            with np.load(entry, allow_pickle=False) as stored:
                self.stats.count("photo", hit=True)
                return PhotoVectors(str(stored["caption"]), stored["clip"], json.loads(str(stored["face_moods"])))
        image = load_configured_photo(data, str(path), self.settings)
        caption = factory.captioner(self.settings).caption([image])[0]
        clip = factory.image_encoder(self.settings).encode_images([image])[0]
        moods = mood_weights(self._faces(image, clip), image.size)
        _atomic_write(entry, lambda fh: np.savez(fh, caption=np.array(caption), clip=clip,
                                                 face_moods=np.array(json.dumps(moods))))
        self.stats.count("photo", hit=False)
        return PhotoVectors(caption, clip, moods)

    def clap_text(self, texts: Sequence[str]) -> np.ndarray:
        """CLAP text vectors (captions, free-text queries, mood prompts), cached per text."""
        return self._texts("clap", texts, lambda missing: factory.clap_encoder(self.settings).encode_text(missing))

    def clip_text(self, texts: Sequence[str]) -> np.ndarray:
        """CLIP text vectors (the face-reading prompts), cached per text."""
        return self._texts("clip", texts, lambda missing: factory.image_encoder(self.settings).encode_text(missing))

    @cached_property
    def _text_dirs(self) -> dict[str, Path]:
        return {kind: self.folder / f"{kind}-text-{self._fingerprint(kind)}" for kind in ("clap", "clip")}

    def _texts(self, kind: ModelKind, texts: Sequence[str], encode: Callable[[list[str]], np.ndarray]) -> np.ndarray:
        entries = [self._text_dirs[kind] / f"{_digest(t.encode())}.npy" for t in texts]
        missing = sorted({t for t, e in zip(texts, entries) if not e.is_file()})
        if missing:
            for text, vector in zip(missing, encode(missing)):
                _atomic_write(self._text_dirs[kind] / f"{_digest(text.encode())}.npy",
                              lambda fh, v=vector: np.save(fh, v))
        self.stats.count(f"{kind}-text", hit=True, n=len(texts) - len(missing))
        self.stats.count(f"{kind}-text", hit=False, n=len(missing))
        return np.stack([np.load(e) for e in entries])
