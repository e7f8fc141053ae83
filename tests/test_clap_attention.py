"""The SDPA window attention (image2mood/models/clap_attention.py) gives transformers' own audio vectors."""

from __future__ import annotations

from pathlib import Path

import image2mood.models._torchvision  # noqa: F401  (first: lets transformers import torchvision)

import numpy as np
import torch
from transformers import ClapAudioConfig, ClapAudioModelWithProjection
from transformers.models.clap.modeling_clap import ClapAudioLayer, ClapAudioSelfAttention

from image2mood.models.clap import ClapEncoder
from image2mood.models.clap_attention import use_sdpa
from image2mood.models.resolve import ResolvedModel


def _transformers_attention(model: torch.nn.Module) -> None:
    """Undo :func:`use_sdpa`: transformers' ``forward`` again."""
    for module in model.modules():
        if isinstance(module, ClapAudioSelfAttention):
            module.__dict__.pop("forward", None)


def test_swapped_attention_gives_the_tiny_clap_its_own_audio_vectors(tiny_models: Path) -> None:
    folder = tiny_models / "clap"
    encoder = ClapEncoder(ResolvedModel("clap", str(folder), folder), precision="fp32")
    rng = np.random.default_rng(0)
    windows = [0.3 * rng.standard_normal(encoder.window_samples).astype(np.float32) for _ in range(3)]
    ours = encoder.encode_windows(windows)
    _transformers_attention(encoder.model)
    np.testing.assert_allclose(ours, encoder.encode_windows(windows), atol=1e-5)


def test_swapped_attention_matches_in_shifted_window_blocks() -> None:
    """Two blocks a stage: the second of each shifts its windows, so the shift mask is in play."""
    torch.manual_seed(0)
    config = ClapAudioConfig(depths=[2, 2], num_attention_heads=[2, 4], patch_embeds_hidden_size=16,
                             hidden_size=32, window_size=8)
    model = ClapAudioModelWithProjection(config).eval()
    for module in model.modules():  # transformers starts the bias table at zero: make it matter
        if isinstance(module, ClapAudioSelfAttention):
            module.relative_position_bias_table.data.normal_(0.0, 1.0)
    features = torch.randn(3, 1, 1001, 64)
    is_longer = torch.zeros((3, 1), dtype=torch.bool)
    with torch.inference_mode():
        reference = model(input_features=features, is_longer=is_longer).audio_embeds
        assert use_sdpa(model) == 4
        ours = model(input_features=features, is_longer=is_longer).audio_embeds
        ours_again = model(input_features=features, is_longer=is_longer).audio_embeds  # the cached mask
    assert any(layer.shift_size > 0 for layer in model.modules() if isinstance(layer, ClapAudioLayer))
    torch.testing.assert_close(ours, reference, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(ours_again, reference, atol=1e-5, rtol=1e-5)
