"""The lean HTSAT stages (image2mood/models/htsat.py) give transformers' own audio vectors."""

from __future__ import annotations

from pathlib import Path

import image2mood.models._torchvision  # noqa: F401  (first: lets transformers import torchvision)

import numpy as np
import pytest
import torch
from transformers import ClapAudioConfig, ClapAudioModelWithProjection
from transformers.models.clap.modeling_clap import ClapAudioPatchEmbed, ClapAudioSelfAttention, ClapAudioStage

from image2mood.models.clap import ClapEncoder
from image2mood.models.htsat import use_fast_stages
from image2mood.models.resolve import ResolvedModel


def _transformers_stages(model: torch.nn.Module) -> None:
    """Undo :func:`use_fast_stages`: transformers' ``forward`` again."""
    for module in model.modules():
        if isinstance(module, ClapAudioStage):
            module.__dict__.pop("forward", None)


def _shifting_model(**config: object) -> ClapAudioModelWithProjection:
    """A small HTSAT: two blocks a stage, the second shifting its windows (so the shift mask is in play), and
    a relative position bias that matters (transformers starts its table at zero)."""
    torch.manual_seed(0)
    model = ClapAudioModelWithProjection(ClapAudioConfig(
        depths=[2, 2], num_attention_heads=[2, 4], patch_embeds_hidden_size=16, hidden_size=32, window_size=8,
        **config)).eval()
    for module in model.modules():
        if isinstance(module, ClapAudioSelfAttention):
            module.relative_position_bias_table.data.normal_(0.0, 1.0)
    return model


def test_fast_stages_give_the_tiny_clap_its_own_audio_vectors(tiny_models: Path) -> None:
    folder = tiny_models / "clap"
    encoder = ClapEncoder(ResolvedModel("clap", str(folder), folder), precision="fp32")
    rng = np.random.default_rng(0)
    windows = [0.3 * rng.standard_normal(encoder.window_samples).astype(np.float32) for _ in range(3)]
    ours = encoder.encode_windows(windows)
    _transformers_stages(encoder.model)
    np.testing.assert_allclose(ours, encoder.encode_windows(windows), atol=1e-5)


def test_fast_stages_match_in_shifted_window_blocks() -> None:
    """Batches of 3, 1 and 5 samples in turn: the kept plan's masks serve fewer samples, and grow for more."""
    model = _shifting_model()
    batches = [torch.randn(samples, 1, 1001, 64) for samples in (3, 1, 5)]

    def embeds(features: torch.Tensor) -> torch.Tensor:
        return model(input_features=features, is_longer=torch.zeros((len(features), 1), dtype=torch.bool)).audio_embeds

    with torch.inference_mode():
        references = [embeds(features) for features in batches]
        assert use_fast_stages(model) == 2
        ours = [embeds(features) for features in batches]
    assert any(block.shift_size > 0 for stage in model.modules() if isinstance(stage, ClapAudioStage)
               for block in stage.blocks)
    for mine, reference in zip(ours, references, strict=True):
        torch.testing.assert_close(mine, reference, atol=1e-5, rtol=1e-5)


def test_fast_stages_in_bf16_stay_within_the_floor_of_fp32() -> None:
    """bf16 goes through oneDNN's fused linear layers (bias, GELU and residual inside): cosine ≥ 0.999 to fp32."""
    model = _shifting_model()
    features = torch.randn(3, 1, 1001, 64)
    is_longer = torch.zeros((3, 1), dtype=torch.bool)
    with torch.inference_mode():
        reference = model(input_features=features, is_longer=is_longer).audio_embeds
        use_fast_stages(model.to(torch.bfloat16))
        ours = model(input_features=features.bfloat16(), is_longer=is_longer).audio_embeds.float()
    assert torch.nn.functional.cosine_similarity(ours, reference).min() >= 0.999


@pytest.mark.parametrize("dimensions", [(12, 12), (16, 8)])
def test_a_grid_the_windows_do_not_tile_runs_transformers_code(dimensions: tuple[int, int]) -> None:
    """12×12 with 8-token windows would need padding: transformers' own forward runs; 16×8 is planned."""
    model = _shifting_model()
    stage = next(module for module in model.modules() if isinstance(module, ClapAudioStage))
    hidden = torch.randn(2, dimensions[0] * dimensions[1], stage.dim)
    with torch.inference_mode():
        reference = stage(hidden, dimensions)
        use_fast_stages(model)
        ours = stage(hidden, dimensions)
    plans = stage.__dict__["_image2mood_plans"]
    assert (plans[(dimensions, torch.float32, hidden.device)] is None) == (dimensions == (12, 12))
    for mine, theirs in zip(ours[:2], reference[:2], strict=True):
        torch.testing.assert_close(mine, theirs, atol=1e-5, rtol=1e-5)
    assert ours[2] == reference[2]


def test_the_patch_embedding_hands_its_tokens_to_the_norm_without_a_copy() -> None:
    """Its convolution writes channels-last, so the flattened tokens are contiguous as they reach the norm."""
    model = _shifting_model()
    embed = next(module for module in model.modules() if isinstance(module, ClapAudioPatchEmbed))
    seen: list[bool] = []
    embed.norm.register_forward_pre_hook(lambda module, args: seen.append(args[0].is_contiguous()))
    features = torch.randn(2, 1, 1001, 64)
    is_longer = torch.zeros((2, 1), dtype=torch.bool)
    with torch.inference_mode():
        reference = model(input_features=features, is_longer=is_longer).audio_embeds
        use_fast_stages(model)
        ours = model(input_features=features, is_longer=is_longer).audio_embeds
    assert seen == [False, True]
    torch.testing.assert_close(ours, reference, atol=1e-5, rtol=1e-5)
