"""``IMAGE2MOOD_PRECISION=int8``: CLAP's audio tower with int8 Linear weights keeps its window vectors within
a cosine of 0.999 of fp32 (the floor of issue 26), through the encoder the indexer uses; ``auto`` keeps it
in bf16 or fp32. The full-size figures (HTSAT-tiny: 0.9998; a converted LAION-CLAP HTSAT-base) are in
bench/README.md (bench/clap_precision.py)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from image2mood.config import Settings
from image2mood.models import factory
from image2mood.models.clap import ClapEncoder
from image2mood.models.precision import Int8Linear, cpu_has_fast_bf16
from image2mood.models.resolve import resolve_model

INT8_CLAP_COSINE = 0.999  # CLAP window vectors, int8 Linear weights against fp32


def _windows(samples: int) -> list[np.ndarray]:
    rng = np.random.default_rng(7)
    t = np.arange(samples)
    return [(0.3 * np.sin(t * f) + 0.05 * rng.standard_normal(samples)).astype(np.float32)
            for f in (0.01, 0.03, 0.07, 0.2)]


def _int8_layers(encoder: ClapEncoder) -> int:
    return sum(isinstance(m, Int8Linear) for m in encoder.audio.modules())


def test_int8_clap_window_vectors_stay_within_their_cosine_of_fp32(tiny_models: Path) -> None:
    clap = resolve_model("clap", str(tiny_models / "clap"))
    fp32, int8 = ClapEncoder(clap, precision="fp32"), ClapEncoder(clap, precision="int8")
    assert int8.int8_audio and not fp32.int8_audio
    linears = sum(isinstance(m, torch.nn.Linear) for m in fp32.audio.modules())
    assert _int8_layers(int8) >= linears > 0  # every Linear of the tower (and the projection's) is int8
    windows = _windows(fp32.window_samples)
    full, reduced = fp32.encode_windows(windows), int8.encode_windows(windows)
    assert reduced.shape == full.shape and np.allclose(np.linalg.norm(reduced, axis=1), 1, atol=1e-5)
    cosines = np.sum(full * reduced, axis=1)
    assert cosines.min() >= INT8_CLAP_COSINE
    assert not np.array_equal(full, reduced)  # int8 really ran: the vectors moved, a little


@pytest.mark.parametrize(("precision", "int8_audio"), [("auto", False), ("fp32", False), ("bf16", False),
                                                       ("int8", True)])
def test_only_the_int8_setting_quantises_the_audio_tower(tiny_models: Path, precision: str, int8_audio: bool) -> None:
    settings = Settings(_env_file=None, models=tiny_models, precision=precision, windows_per_song=0)
    encoder = factory.clap_encoder(settings)
    assert encoder.int8_audio is int8_audio
    assert (_int8_layers(encoder) > 0) is int8_audio
    text = encoder.encode_text(["rain at night"])  # the text tower is untouched by int8
    assert text.shape == (1, encoder.dim)


@pytest.mark.parametrize("windows", [6, 0])
def test_the_audio_tower_follows_the_precision_at_any_window_count(tiny_models: Path, windows: int) -> None:
    """bf16 for the default six windows too, not only for --windows all (cosine 0.99998 to fp32 at full size)."""
    auto = factory.clap_encoder(Settings(_env_file=None, models=tiny_models, windows_per_song=windows))
    assert auto.bf16 == cpu_has_fast_bf16()
    full = factory.clap_encoder(Settings(_env_file=None, models=tiny_models, windows_per_song=windows, precision="fp32"))
    assert not full.bf16 and full.audio_dtype == torch.float32
