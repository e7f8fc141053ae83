"""LAION-CLAP ``.pt`` -> transformers CLAP folder, checked against the original model's own key list.

The fixture lists every state-dict entry of laion_clap's unfused HTSAT-base + RoBERTa model (the
music checkpoint's architecture) as laion_clap builds it; the tests fill it with random tensors in the
layout of the released files and convert that, so a rename the converter gets wrong shows here.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from pathlib import Path

import image2mood.models._torchvision  # noqa: F401  (registers the torchvision workaround before transformers' CLAP)
import numpy as np
import pytest
import torch
from transformers import AutoProcessor, ClapModel, ClapProcessor

from image2mood.errors import ModelLoadError, ModelNotFoundError
from image2mood.models.clap_convert import convert_laion_clap, load_laion_state_dict
from image2mood.models.tiny import write_tiny_clap

FIXTURE = Path(__file__).parent / "fixtures" / "laion_clap_music_htsat_base_keys.txt"
QKV = "audio_branch.layers.2.blocks.7.attn.qkv"
KEPT = (  # original tensors whose values the main test follows into the converted model
    f"{QKV}.weight", f"{QKV}.bias", "audio_projection.0.weight", "audio_branch.bn0.running_var",
    "text_branch.encoder.layer.11.intermediate.dense.weight", "text_projection.2.bias", "logit_scale_a",
)


def _entries() -> list[tuple[str, tuple[int, ...], torch.dtype]]:
    rows = [line.rstrip("\n").split("\t") for line in FIXTURE.read_text().splitlines(True)
            if line.strip() and not line.startswith("#")]
    return [(key, () if shape == "()" else tuple(int(n) for n in shape.split("x")), getattr(torch, dtype))
            for key, shape, dtype in rows]


def _laion_state(make: Callable[[tuple[int, ...], torch.dtype], torch.Tensor]) -> dict[str, torch.Tensor]:
    return {key: make(shape, dtype) for key, shape, dtype in _entries()}


def _cheap(shape: tuple[int, ...], dtype: torch.dtype) -> torch.Tensor:
    """A tensor of the right shape stored as one number (stride 0): for tests that fail before values matter."""
    return torch.zeros((), dtype=dtype).expand(shape)


def _save(path: Path, state: dict[str, torch.Tensor], **extra: object) -> Path:
    """Save as the released checkpoints are: DDP names ("module." prefix) inside {"state_dict": ...}."""
    torch.save({"epoch": np.int64(15), "state_dict": {f"module.{k}": v for k, v in state.items()}, **extra}, path)
    return path


@pytest.fixture(scope="module")
def tokenizer_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small RoBERTa-style byte-level tokenizer (261 entries; roberta-base's has 50265)."""
    folder = tmp_path_factory.mktemp("tok") / "clap"
    write_tiny_clap(folder)
    return folder


@pytest.fixture(scope="module")
def converted(tmp_path_factory: pytest.TempPathFactory, tokenizer_dir: Path) -> tuple[Path, dict[str, torch.Tensor]]:
    """A random music-checkpoint look-alike, converted; returns the folder and the KEPT originals."""
    root = tmp_path_factory.mktemp("convert")
    generator = torch.Generator().manual_seed(0)
    state = _laion_state(lambda shape, dtype: torch.randn(shape, generator=generator) * 0.05
                         if dtype.is_floating_point else torch.randint(0, 64, shape, generator=generator))
    state["audio_branch.bn0.running_var"].abs_().add_(0.5)  # a variance, so batch norm stays finite
    checkpoint = _save(root / "music_audioset_epoch_15_esc_90.14.pt", state)
    kept = {key: state[key].clone() for key in KEPT}
    del state
    with pytest.warns(UserWarning, match="261 entries"):
        out = convert_laion_clap(checkpoint, root / "clap", audio_model="HTSAT-base", tokenizer_source=tokenizer_dir)
    checkpoint.unlink()
    return out, kept


def test_fixture_is_the_music_architecture() -> None:
    shapes = {key: shape for key, shape, _ in _entries()}
    assert len(shapes) == 505
    assert shapes["audio_branch.patch_embed.proj.weight"] == (128, 1, 4, 4)  # HTSAT-base width
    assert shapes["text_branch.embeddings.word_embeddings.weight"] == (50265, 768)
    assert shapes["audio_projection.0.weight"] == (512, 1024)


def test_converted_folder_loads_completely(converted: tuple[Path, dict[str, torch.Tensor]]) -> None:
    out, _ = converted
    model, info = ClapModel.from_pretrained(out, output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"] and not info["mismatched_keys"]
    audio, text = model.config.audio_config, model.config.text_config
    assert (audio.patch_embeds_hidden_size, list(audio.depths), audio.hidden_size) == (128, [2, 2, 12, 2], 1024)
    assert not audio.enable_fusion and model.config.projection_dim == 512
    assert (text.vocab_size, text.max_position_embeddings, text.layer_norm_eps) == (50265, 514, 1e-5)
    processor = AutoProcessor.from_pretrained(out)
    assert isinstance(processor, ClapProcessor)
    features = processor.feature_extractor
    assert (features.sampling_rate, features.nb_max_samples, features.truncation) == (48_000, 480_000, "rand_trunc")
    config = json.loads((out / "config.json").read_text())
    assert config["architectures"] == ["ClapModel"]


def test_tensors_land_where_they_belong(converted: tuple[Path, dict[str, torch.Tensor]]) -> None:
    out, original = converted
    weights = ClapModel.from_pretrained(out).state_dict()
    block = "audio_model.audio_encoder.layers.2.blocks.7.attention.self"
    for suffix in ("weight", "bias"):
        qkv = original[f"{QKV}.{suffix}"]
        third = qkv.shape[0] // 3
        assert torch.equal(weights[f"{block}.query.{suffix}"], qkv[:third])
        assert torch.equal(weights[f"{block}.key.{suffix}"], qkv[third:2 * third])
        assert torch.equal(weights[f"{block}.value.{suffix}"], qkv[2 * third:])
    assert torch.equal(weights["audio_projection.linear1.weight"], original["audio_projection.0.weight"])
    assert torch.equal(weights["audio_model.audio_encoder.batch_norm.running_var"],
                       original["audio_branch.bn0.running_var"])
    assert torch.equal(weights["text_model.encoder.layer.11.intermediate.dense.weight"],
                       original["text_branch.encoder.layer.11.intermediate.dense.weight"])
    assert torch.equal(weights["text_projection.linear2.bias"], original["text_projection.2.bias"])
    assert torch.equal(weights["logit_scale_a"], original["logit_scale_a"])


def test_converted_model_embeds_audio_and_text(converted: tuple[Path, dict[str, torch.Tensor]]) -> None:
    out, _ = converted
    model = ClapModel.from_pretrained(out).eval()
    processor = AutoProcessor.from_pretrained(out)
    window = np.random.default_rng(0).uniform(-0.5, 0.5, 480_000).astype(np.float32)  # one 10-s window
    audio_inputs = processor.feature_extractor([window], sampling_rate=48_000, return_tensors="pt")
    text_inputs = processor.tokenizer(["rain on a quiet street at night"], return_tensors="pt")
    with torch.inference_mode():
        audio = model.get_audio_features(input_features=audio_inputs["input_features"]).pooler_output
        text = model.get_text_features(**text_inputs).pooler_output
    for vector in (audio, text):
        assert vector.shape == (1, 512)
        assert torch.isfinite(vector).all()
        assert torch.allclose(vector.norm(dim=-1), torch.ones(1), atol=1e-5)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda s: s.update({"audio_branch.junk.weight": torch.zeros(3)}), r"audio_branch\.junk\.weight"),
        (lambda s: s.update({"text_branch.pooler.dense.weight": _cheap((768, 767), torch.float32)}),
         r"text_branch\.pooler\.dense\.weight \(768, 767\) vs \(768, 768\).*not an HTSAT \+ RoBERTa-base"),
        (lambda s: s.pop("text_branch.pooler.dense.weight"), r"missing.*text_model\.pooler\.dense\.weight"),
        (lambda s: s.update({"audio_branch.patch_embed.fusion_model.local_att.0.weight": torch.zeros(1)}),
         r"fusion .*not\s+support"),
    ],
    ids=["junk-key", "wrong-shape", "missing-weight", "fusion"],
)
def test_checkpoint_that_does_not_fit_is_refused(
    tmp_path: Path, tokenizer_dir: Path, change: Callable[[dict[str, torch.Tensor]], object], message: str
) -> None:
    state = _laion_state(_cheap)
    change(state)
    checkpoint = _save(tmp_path / "odd.pt", state)
    with pytest.raises(ModelLoadError, match=message) as caught:
        convert_laion_clap(checkpoint, tmp_path / "out", tokenizer_source=tokenizer_dir)
    assert "odd.pt" in str(caught.value)
    assert not (tmp_path / "out").exists()


def test_wrong_audio_model_names_the_right_one(tmp_path: Path, tokenizer_dir: Path) -> None:
    checkpoint = _save(tmp_path / "music.pt", _laion_state(_cheap))
    with pytest.raises(ModelLoadError, match=r"looks like HTSAT-base: pass --audio-model HTSAT-base"):
        convert_laion_clap(checkpoint, tmp_path / "out", audio_model="HTSAT-tiny", tokenizer_source=tokenizer_dir)


def test_empty_tokenizer_is_refused(tmp_path: Path) -> None:
    bogus = tmp_path / "tokenizer"  # transformers 5 turns this into a 5-entry tokenizer without complaint
    bogus.mkdir()
    (bogus / "tokenizer_config.json").write_text('{"tokenizer_class": "RobertaTokenizer"}')
    checkpoint = _save(tmp_path / "music.pt", _laion_state(_cheap))
    with pytest.raises(ModelLoadError, match=r"5 entries.*not a RoBERTa tokenizer"):
        convert_laion_clap(checkpoint, tmp_path / "out", tokenizer_source=bogus)


def test_unsafe_pickle_needs_trust(tmp_path: Path) -> None:
    state = {"audio_branch.bn0.weight": torch.ones(2), "text_branch.pooler.dense.bias": torch.ones(2)}
    with_object = _save(tmp_path / "args.pt", state, args=argparse.Namespace(lr=1e-4))
    protocol_4 = tmp_path / "p4.pt"
    torch.save({"state_dict": {f"module.{k}": v for k, v in state.items()}}, protocol_4, pickle_protocol=4)
    for checkpoint, reason in ((with_object, "argparse.Namespace"), (protocol_4, "Unsupported operand")):
        with pytest.raises(ModelLoadError, match=rf"{checkpoint.name}.*{reason}.*--trust-checkpoint"):
            load_laion_state_dict(checkpoint)
        loaded = load_laion_state_dict(checkpoint, trust_checkpoint=True)
        assert set(loaded) == set(state)  # "module." cut, the wrapper unwrapped


def test_plain_state_dict_and_numpy_scalars_load_safely(tmp_path: Path) -> None:
    state = {"audio_branch.bn0.weight": torch.ones(2), "text_branch.pooler.dense.bias": torch.ones(2)}
    torch.save(state, tmp_path / "plain.pt")
    assert set(load_laion_state_dict(tmp_path / "plain.pt")) == set(state)
    wrapped = _save(tmp_path / "wrapped.pt", state, best=np.float64(0.9014))  # numpy scalars, as released files hold
    assert set(load_laion_state_dict(wrapped)) == set(state)


def test_user_errors_name_the_file(tmp_path: Path, tokenizer_dir: Path) -> None:
    with pytest.raises(ModelNotFoundError, match="nowhere.pt"):
        convert_laion_clap(tmp_path / "nowhere.pt", tmp_path / "out", tokenizer_source=tokenizer_dir)
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "keep.txt").write_text("mine")
    with pytest.raises(ModelLoadError, match="busy is not empty"):
        convert_laion_clap(tmp_path / "nowhere.pt", tmp_path / "busy", tokenizer_source=tokenizer_dir)
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(ModelLoadError, match="junk.pt is not a torch checkpoint"):
        convert_laion_clap(tmp_path / "junk.pt", tmp_path / "out", tokenizer_source=tokenizer_dir)
    with pytest.raises(ModelLoadError, match="HTSAT-large"):
        convert_laion_clap(tmp_path / "junk.pt", tmp_path / "out", audio_model="HTSAT-large",
                           tokenizer_source=tokenizer_dir)
