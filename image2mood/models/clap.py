"""CLAP: audio windows and texts into one joint space.

The audio tower is :mod:`image2mood.models.htsat` and its input :mod:`image2mood.models.clap_features`, both torch
alone, so ``index`` never imports transformers; the text tower (:mod:`image2mood.models.clap_text`,
transformers' ``ClapTextModelWithProjection``) loads with the first text to embed.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import TYPE_CHECKING, Literal

import numpy as np
import torch

from image2mood.models.clap_facts import AUDIO_PREPROCESSING
from image2mood.models.clap_features import LogMel
from image2mood.models.fingerprint import model_fingerprint
from image2mood.models.htsat import HtsatTower
from image2mood.models.loading import load_or_explain
from image2mood.models.precision import Precision, int8_linears, uses_bf16, uses_int8_audio
from image2mood.models.resolve import ResolvedModel
from image2mood.vectors import l2_normalise

if TYPE_CHECKING:
    from image2mood.models.clap_text import TextTower

WINDOW_BATCH = 8  # windows through the audio tower at once: a long song's windows take bounded memory


def laion_quantise(window: np.ndarray) -> np.ndarray:
    """LAION-CLAP's own preprocessing of a waveform: clip to ±1, truncate to int16 steps, back to float32.

    Exactly ``int16_to_float32(float32_to_int16(x))`` from ``laion_clap.training.data``, which
    ``CLAP_Module.get_audio_embedding_from_data``/``_from_filelist`` and training apply before the log-mel.
    The division runs in float32: for every int16 step it gives the same float32 as LAION's float64 division
    rounded to float32, in half the time.
    """
    clipped = np.clip(np.asarray(window, dtype=np.float32), -1.0, 1.0)
    clipped *= np.float32(32767.0)
    out = clipped.astype(np.int16).astype(np.float32)
    out /= np.float32(32767.0)
    return out


Pooling = Literal["mean", "max"]
"""How a song's window vectors become one: their mean (the default) or their element-wise max."""


class ClapEncoder:
    """``encode_audio`` pools a song's windows into one vector; ``encode_text`` embeds prompts."""

    preprocessing = AUDIO_PREPROCESSING

    def __init__(self, resolved: ResolvedModel, device: str = "cpu", precision: Precision = "fp32",
                 text_precision: Precision = "fp32") -> None:
        """``precision``: the audio tower's (it changes stored vectors, so the store's windowing decides it);
        ``text_precision``: the text tower's (queries and mood prompts only)."""
        self.resolved, self.name = resolved, resolved.spec
        self.fingerprint = model_fingerprint(resolved)  # what a store records of these weights
        self.device = torch.device(device)
        self.audio = load_or_explain(resolved, lambda: HtsatTower.load(resolved.folder)).to(self.device)
        self.log_mel = load_or_explain(resolved, lambda: LogMel.read(resolved.folder, self.audio.config.enable_fusion))
        self.bf16 = uses_bf16(precision, self.device)  # the audio tower's weights
        self.audio_dtype = torch.bfloat16 if self.bf16 else torch.float32
        self.audio.to(self.audio_dtype)
        self.int8_audio = uses_int8_audio(precision, self.device)  # fp32 with int8 Linear weights
        if self.int8_audio:
            int8_linears(self.audio)
        self.text_precision = text_precision
        self._text: TextTower | None = None
        self._text_lock = threading.Lock()

    @property
    def sample_rate(self) -> int:
        return self.log_mel.sample_rate

    @property
    def window_samples(self) -> int:
        return self.log_mel.window_samples

    @property
    def dim(self) -> int:
        return self.audio.config.projection_dim

    @torch.inference_mode()
    def encode_windows(self, windows: Sequence[np.ndarray]) -> np.ndarray:
        """One L2-normalised vector per window (at most one CLAP window long each), in one batch.

        Each window goes through :func:`laion_quantise` first, as LAION-CLAP's own embedding calls do. The
        tower (:mod:`image2mood.models.htsat`) gives transformers' vectors, 1.28× as fast in bf16 and 2.0× in
        fp32 (bench/clap_tower.py, 8 windows, 1 thread).
        """
        features = self.log_mel([laion_quantise(w) for w in windows]).to(self.device, self.audio_dtype)
        return l2_normalise(self.audio(features).float().cpu().numpy())

    def window_vectors(self, windows: Sequence[np.ndarray]) -> np.ndarray:
        """A song's window vectors, ``[n, dim]``, embedded :data:`WINDOW_BATCH` at a time."""
        return np.concatenate([self.encode_windows(windows[i:i + WINDOW_BATCH])
                               for i in range(0, len(windows), WINDOW_BATCH)])

    def encode_audio(self, windows: Sequence[np.ndarray], pooling: Pooling = "mean") -> np.ndarray:
        """A song's vector: :func:`pool` of its :meth:`window_vectors`."""
        return pool(self.window_vectors(windows), pooling)

    @property
    def text(self) -> TextTower:
        """The text tower, loaded on first use (the indexer never embeds text)."""
        with self._text_lock:
            if self._text is None:
                from image2mood.models.clap_text import TextTower

                self._text = TextTower(self.resolved, self.device, self.text_precision)
            return self._text

    def encode_text(self, texts: Sequence[str]) -> np.ndarray:
        """One L2-normalised vector per text."""
        return self.text.encode(texts)


def pool(vectors: np.ndarray, pooling: Pooling = "mean") -> np.ndarray:
    """One song vector from its window vectors: their mean (or element-wise max), L2-normalised."""
    return l2_normalise(vectors.max(axis=0) if pooling == "max" else vectors.mean(axis=0))

