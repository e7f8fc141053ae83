"""CLAP's audio tower in torch alone (image2mood/models/htsat.py) gives transformers' own audio vectors, from
every checkpoint layout, and ``index`` runs without importing transformers."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import image2mood.models._torchvision  # noqa: F401  (first: lets transformers import torchvision)

import numpy as np
import pytest
import torch
from safetensors.torch import save_file
from transformers import ClapAudioConfig, ClapAudioModelWithProjection, ClapFeatureExtractor, ClapModel

from image2mood.errors import ModelLoadError
from image2mood.models.clap import ClapEncoder
from image2mood.models.clap_features import LogMel
from image2mood.models.htsat import HtsatConfig, HtsatTower
from image2mood.models.resolve import ResolvedModel


def _reference(tmp_path: Path, **config: object) -> tuple[ClapAudioModelWithProjection, HtsatTower]:
    """A small transformers HTSAT, saved and loaded back as ours: four stages on grids of 64, 32, 16 and 8 tokens
    a side; the first's second block shifts its windows (so the shift mask is in play), the last's does not (one
    window covers its grid); a relative position bias that matters (transformers starts its table at zero)."""
    torch.manual_seed(0)
    model = ClapAudioModelWithProjection(ClapAudioConfig(
        depths=[2, 1, 1, 2], num_attention_heads=[2, 2, 4, 4], patch_embeds_hidden_size=16, hidden_size=128,
        window_size=8, **config)).eval()
    for name, parameter in model.named_parameters():
        if name.endswith("relative_position_bias_table"):
            parameter.data.normal_(0.0, 1.0)
    for module in model.modules():  # running statistics that are not the identity
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.normal_(0.0, 1.0)
            module.running_var.uniform_(0.5, 2.0)
    model.save_pretrained(tmp_path)
    return model, HtsatTower.load(tmp_path)


def _theirs(model: ClapAudioModelWithProjection, features: torch.Tensor) -> torch.Tensor:
    """transformers' vectors, L2-normalised as ``ClapModel.get_audio_features`` gives them."""
    with torch.inference_mode():
        out = model(input_features=features, is_longer=torch.zeros((len(features), 1), dtype=torch.bool))
    return torch.nn.functional.normalize(out.audio_embeds, dim=-1)


def test_the_tower_gives_transformers_vectors_in_shifted_window_blocks(tmp_path: Path) -> None:
    """Batches of 3, 1 and 5 samples in turn: the kept plan's masks serve fewer samples, and grow for more."""
    model, tower = _reference(tmp_path)
    assert any(block.shift_size > 0 for stage in tower.audio_model.audio_encoder.layers for block in stage.blocks)
    for samples in (3, 1, 5):
        features = torch.randn(samples, 1, 1001, 64)
        with torch.inference_mode():
            ours = tower(features)
        torch.testing.assert_close(ours, _theirs(model, features), atol=1e-5, rtol=1e-5)


def test_a_fusion_model_runs_its_global_branch_as_transformers_does_for_windows_no_longer(tmp_path: Path) -> None:
    model, tower = _reference(tmp_path, enable_fusion=True, fusion_type="aff_2d")
    assert any(".fusion_model." in name for name, _ in model.named_parameters())  # in the checkpoint, not read
    features = torch.randn(2, 1, 1001, 64)
    with torch.inference_mode():
        ours = tower(features)
    torch.testing.assert_close(ours, _theirs(model, features.repeat(1, 4, 1, 1)), atol=1e-5, rtol=1e-5)


def test_the_tower_in_bf16_stays_within_the_floor_of_fp32(tmp_path: Path) -> None:
    """bf16 goes through oneDNN's fused linear layers (bias, GELU and residual inside): cosine ≥ 0.999 to fp32."""
    model, tower = _reference(tmp_path)
    features = torch.randn(3, 1, 1001, 64)
    with torch.inference_mode():
        ours = tower.to(torch.bfloat16)(features.bfloat16()).float()
    assert torch.nn.functional.cosine_similarity(ours, _theirs(model, features)).min() >= 0.999


def test_the_patch_embedding_hands_its_tokens_to_the_norm_without_a_copy(tmp_path: Path) -> None:
    """Its convolution writes channels-last, so the flattened tokens are contiguous as they reach the norm."""
    _, tower = _reference(tmp_path)
    seen: list[bool] = []
    tower.audio_model.audio_encoder.patch_embed.norm.register_forward_pre_hook(
        lambda module, args: seen.append(args[0].is_contiguous()))
    with torch.inference_mode():
        tower(torch.randn(2, 1, 1001, 64))
    assert seen == [True]


def test_every_checkpoint_layout_loads_the_same_weights(tmp_path: Path) -> None:
    """model.safetensors, shards with their index, pytorch_model.bin."""
    model, tower = _reference(tmp_path / "single")
    state = {k: v.contiguous() for k, v in model.state_dict().items()}
    sharded = tmp_path / "sharded"
    sharded.mkdir()
    keys = sorted(state)
    halves = {"a.safetensors": keys[: len(keys) // 2], "b.safetensors": keys[len(keys) // 2:]}
    for name, part in halves.items():
        save_file({k: state[k] for k in part}, str(sharded / name))
    (sharded / "model.safetensors.index.json").write_text(
        json.dumps({"weight_map": {k: name for name, part in halves.items() for k in part}}))
    legacy = tmp_path / "legacy"
    legacy.mkdir()
    torch.save(state, legacy / "pytorch_model.bin")
    features = torch.randn(2, 1, 1001, 64)
    with torch.inference_mode():
        reference = tower(features)
        for folder in (sharded, legacy):
            (folder / "config.json").write_text((tmp_path / "single" / "config.json").read_text())
            assert torch.equal(HtsatTower.load(folder)(features), reference)


def test_a_folder_without_weights_with_broken_ones_or_an_unsupported_tower_is_refused_by_name(tmp_path: Path) -> None:
    _reference(tmp_path / "good")
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "config.json").write_text((tmp_path / "good" / "config.json").read_text())
    with pytest.raises(ModelLoadError, match=r"no model\.safetensors or pytorch_model\.bin in .*empty"):
        ClapEncoder(ResolvedModel("clap", str(empty), empty))
    (empty / "config.json").write_text("[]")
    with pytest.raises(ModelLoadError, match=r"empty/config\.json is not a JSON object"):
        ClapEncoder(ResolvedModel("clap", str(empty), empty))
    for name in ("model.safetensors", "pytorch_model.bin"):  # cut short, as an interrupted download leaves it
        broken = tmp_path / name.split(".")[0]
        broken.mkdir()
        (broken / "config.json").write_text((tmp_path / "good" / "config.json").read_text())
        (broken / name).write_bytes((tmp_path / "good" / "model.safetensors").read_bytes()[:1000])
        with pytest.raises(ModelLoadError, match=rf"in {broken} could not be loaded \(OSError: cannot read .*{name}"):
            ClapEncoder(ResolvedModel("clap", str(broken), broken))
    model = ClapAudioModelWithProjection.from_pretrained(tmp_path / "good")
    state = {k: v.contiguous() for k, v in model.state_dict().items() if not k.endswith("layers.1.downsample.norm.bias")}
    renamed = tmp_path / "renamed"
    renamed.mkdir()
    (renamed / "config.json").write_text((tmp_path / "good" / "config.json").read_text())
    save_file(state, str(renamed / "model.safetensors"))
    with pytest.raises(ModelLoadError, match=r"not HTSAT's: no audio_model\.audio_encoder\.layers\.1\.downsample\.norm\.bias"):
        ClapEncoder(ResolvedModel("clap", str(renamed), renamed))
    config = json.loads((tmp_path / "good" / "config.json").read_text())
    (renamed / "config.json").write_text(json.dumps({**config, "patch_embeds_hidden_size": 8}))
    with pytest.raises(ModelLoadError, match=r"\(ValueError: size mismatch for audio_model\."):
        ClapEncoder(ResolvedModel("clap", str(renamed), renamed))
    config["audio_config"] = {**config.get("audio_config", config), "window_size": 12}
    with pytest.raises(ValueError, match=r"stage 0's 64×64 grid in 12-token windows"):
        HtsatConfig.from_model_config(config)


def test_the_config_defaults_are_transformers_own() -> None:
    theirs = ClapAudioConfig()
    for field in dataclasses.fields(HtsatConfig):
        value = getattr(theirs, field.name)
        assert getattr(HtsatConfig(), field.name) == (tuple(value) if isinstance(value, list) else value), field.name


@pytest.mark.parametrize("fusion", [False, True])
def test_the_filter_bank_and_defaults_are_the_feature_extractors(tmp_path: Path, fusion: bool) -> None:
    extractor = ClapFeatureExtractor()
    extractor.save_pretrained(tmp_path)
    ours = LogMel.read(tmp_path, fusion)
    theirs = extractor.mel_filters if fusion else extractor.mel_filters_slaney
    np.testing.assert_allclose(ours.filters.numpy(), theirs.T.astype(np.float32), rtol=1e-6, atol=1e-9)
    (tmp_path / "preprocessor_config.json").write_text("{}")  # every setting left to the defaults
    silent = LogMel.read(tmp_path, fusion)
    assert (silent.sample_rate, silent.window_samples, silent.fft_size, silent.hop_length, silent.padding) == \
        (extractor.sampling_rate, extractor.nb_max_samples, extractor.fft_window_size, extractor.hop_length,
         extractor.padding)
    assert torch.equal(silent.filters, ours.filters)


def test_the_encoder_gives_clapmodels_audio_vectors_and_index_never_imports_transformers(
        tiny_models: Path, tmp_path: Path, cli_env: dict[str, str]) -> None:
    folder = tiny_models / "clap"
    encoder = ClapEncoder(ResolvedModel("clap", str(folder), folder), precision="fp32")
    features = torch.randn(3, 1, 1001, 64)
    with torch.inference_mode():
        theirs = ClapModel.from_pretrained(folder).eval().get_audio_features(
            input_features=features, is_longer=torch.zeros((3, 1), dtype=torch.bool)).pooler_output
        torch.testing.assert_close(encoder.audio(features), theirs, atol=1e-5, rtol=1e-5)
    music = tmp_path / "music"
    music.mkdir()
    rate = encoder.sample_rate
    import soundfile as sf

    sf.write(music / "tone.wav", (0.3 * np.sin(np.arange(3 * rate) * 0.05)).astype(np.float32), rate)
    probe = ("import sys, runpy; sys.argv = ['image2mood', 'index', sys.argv[1], '--store', sys.argv[2]]\n"
             "try:\n    runpy.run_module('image2mood_cli.main', run_name='__main__')\n"
             "except SystemExit as e:\n    assert not e.code, e.code\n"
             "print('transformers imported' if 'transformers' in sys.modules else 'transformers never imported')")
    done = subprocess.run([sys.executable, "-c", probe, str(music), str(tmp_path / "store")], env=cli_env,
                          cwd=tmp_path, capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    assert "indexed 1," in done.stdout and "transformers never imported" in done.stdout, done.stdout + done.stderr
