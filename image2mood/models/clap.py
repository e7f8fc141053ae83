"""CLAP through transformers' ``ClapModel``: audio windows and texts into one joint space."""

from __future__ import annotations

import image2mood.models._torchvision  # noqa: F401  (first: lets transformers and open_clip import torchvision)

import threading
from collections.abc import Sequence
from typing import Literal

import numpy as np
import torch
from transformers import AutoTokenizer, ClapFeatureExtractor, ClapModel

from image2mood.models.clap_facts import AUDIO_PREPROCESSING
from image2mood.models.fingerprint import model_fingerprint
from image2mood.models.htsat import use_fast_stages
from image2mood.models.loading import checked_tokenizer, load_or_explain
from image2mood.models.precision import Precision, int8_linears, uses_bf16, uses_int8_audio, uses_int8_weights
from image2mood.models.resolve import ResolvedModel
from image2mood.vectors import l2_normalise


TEXT_TOKENS = 77  # LAION-CLAP's training length for texts
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
        folder = resolved.folder
        self.name = resolved.spec
        self.fingerprint = model_fingerprint(resolved)  # what a store records of these weights
        self.device = torch.device(device)
        self.model = load_or_explain(resolved, lambda: ClapModel.from_pretrained(folder)).eval().to(self.device)
        self.features = load_or_explain(resolved, lambda: ClapFeatureExtractor.from_pretrained(folder))
        self.tokenizer = checked_tokenizer(
            resolved, load_or_explain(resolved, lambda: AutoTokenizer.from_pretrained(folder)),
            self.model.config.text_config.vocab_size,
        )
        self.fusion = bool(self.model.config.audio_config.enable_fusion)
        # The feature extractor's own filter bank for this mode, used by the torch log-mel below.
        filters = self.features.mel_filters if self.fusion else self.features.mel_filters_slaney
        self._mel_filters = torch.from_numpy(np.asarray(filters, dtype=np.float32)).T.contiguous()
        self._window = torch.hann_window(self.features.fft_window_size, periodic=True)
        self.bf16 = uses_bf16(precision, self.device)  # the audio tower's weights
        self.audio_dtype = torch.bfloat16 if self.bf16 else torch.float32
        self.model.audio_model.to(self.audio_dtype)
        self.model.audio_projection.to(self.audio_dtype)
        self.int8_audio = uses_int8_audio(precision, self.device)  # fp32 with int8 Linear weights
        if self.int8_audio:
            self.model.audio_model = int8_linears(self.model.audio_model)
            self.model.audio_projection = int8_linears(self.model.audio_projection)
        use_fast_stages(self.model.audio_model)
        self._text_precision: Precision | None = text_precision  # applied at the first encode_text, then None
        self._text_lock = threading.Lock()

    @property
    def sample_rate(self) -> int:
        return int(self.features.sampling_rate)

    @property
    def window_samples(self) -> int:
        return int(self.features.nb_max_samples)

    @property
    def dim(self) -> int:
        return int(self.model.config.projection_dim)

    def log_mel(self, windows: Sequence[np.ndarray]) -> torch.Tensor:
        """The model's input for a batch of windows: ``[n, channels, frames, mels]``.

        The same computation as ``ClapFeatureExtractor`` (padding, Hann STFT, power, the extractor's
        mel filter bank, dB), done in torch for the whole batch: several times faster than the
        extractor's per-window numpy, and deterministic for fusion models too (the extractor marks
        a random short clip as "longer" there).
        """
        size = self.window_samples
        if any(len(w) > size or len(w) == 0 for w in windows):
            raise ValueError(f"windows must hold 1 to {size} samples")
        # One window at a time: its spectrum (8 MB) stays in cache, twice as fast as the batch's at once.
        mel = torch.stack([self._mel_power(_pad(np.asarray(w, np.float32), size, self.features.padding))
                           for w in windows])
        features = (10.0 * torch.log10(mel)).transpose(1, 2).unsqueeze(1)
        return features.repeat(1, 4, 1, 1) if self.fusion else features

    def _mel_power(self, window: np.ndarray) -> torch.Tensor:
        """One padded window's mel power spectrogram, ``[mels, frames]``."""
        spectrum = torch.stft(torch.from_numpy(window), self.features.fft_window_size,
                              hop_length=self.features.hop_length, window=self._window, center=True,
                              pad_mode="reflect", return_complex=True)
        power = spectrum.real.square() + spectrum.imag.square()  # 2.7x faster than .abs().pow(2)
        return torch.clamp(self._mel_filters @ power, min=1e-10)

    @torch.inference_mode()
    def encode_windows(self, windows: Sequence[np.ndarray]) -> np.ndarray:
        """One L2-normalised vector per window (at most one CLAP window long each), in one batch.

        Each window goes through :func:`laion_quantise` first, as LAION-CLAP's own embedding calls do. The
        tower's Swin stages run through :mod:`image2mood.models.htsat`: the same vectors, 1.56× faster than
        transformers' code in bf16 and 1.81× in fp32 (bench/clap_tower.py, 8 windows, 1 thread).
        """
        features = self.log_mel([laion_quantise(w) for w in windows]).to(self.device, self.audio_dtype)
        is_longer = torch.zeros((len(windows), 1), dtype=torch.bool, device=self.device)
        out = self.model.get_audio_features(input_features=features, is_longer=is_longer)
        return l2_normalise(out.pooler_output.float().cpu().numpy())

    def window_vectors(self, windows: Sequence[np.ndarray]) -> np.ndarray:
        """A song's window vectors, ``[n, dim]``, embedded :data:`WINDOW_BATCH` at a time."""
        return np.concatenate([self.encode_windows(windows[i:i + WINDOW_BATCH])
                               for i in range(0, len(windows), WINDOW_BATCH)])

    def encode_audio(self, windows: Sequence[np.ndarray], pooling: Pooling = "mean") -> np.ndarray:
        """A song's vector: :func:`pool` of its :meth:`window_vectors`."""
        return pool(self.window_vectors(windows), pooling)

    @torch.inference_mode()
    def encode_text(self, texts: Sequence[str]) -> np.ndarray:
        """One L2-normalised vector per text.

        The text tower takes its precision here, on first use, not at load: the indexer never embeds text, and
        a bf16 conversion's copy had doubled its peak memory (0.55 GB → 1.26 GB for HTSAT-tiny + RoBERTa). On a
        CPU its Linear layers take int8 weights (:func:`~image2mood.models.precision.uses_int8_weights`: one
        caption 28 → 20 ms against bf16), else bf16 where fast."""
        with self._text_lock:
            if self._text_precision is not None:
                self._set_text_precision(self._text_precision)
                self._text_precision = None
        tokens = self.tokenizer(list(texts), padding=True, truncation=True, return_tensors="pt",
                                max_length=min(TEXT_TOKENS, self.tokenizer.model_max_length))
        out = self.model.get_text_features(
            input_ids=tokens["input_ids"].to(self.device),
            attention_mask=tokens["attention_mask"].to(self.device),
        )
        return l2_normalise(out.pooler_output.float().cpu().numpy())

    def _set_text_precision(self, precision: Precision) -> None:
        with torch.inference_mode(False), torch.no_grad():  # plain weights, whatever mode the caller is in
            if uses_int8_weights(precision, self.device):
                self.model.text_model = int8_linears(self.model.text_model)
                self.model.text_projection = int8_linears(self.model.text_projection)
            elif uses_bf16(precision, self.device):
                self.model.text_model.to(torch.bfloat16)
                self.model.text_projection.to(torch.bfloat16)


def pool(vectors: np.ndarray, pooling: Pooling = "mean") -> np.ndarray:
    """One song vector from its window vectors: their mean (or element-wise max), L2-normalised."""
    return l2_normalise(vectors.max(axis=0) if pooling == "max" else vectors.mean(axis=0))


def _pad(window: np.ndarray, size: int, mode: str) -> np.ndarray:
    """Fill a short window up to ``size`` samples as CLAP's feature extractor does."""
    if len(window) < size:
        if mode == "repeat":
            window = np.tile(window, size // len(window) + 1)[:size]
        elif mode == "repeatpad":
            window = np.tile(window, size // len(window))
    return np.pad(window, (0, size - len(window)))
