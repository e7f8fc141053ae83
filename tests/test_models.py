"""Model loading in one place: tiny set, local folders, the hub cache offline, clear errors."""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from transformers import ClapFeatureExtractor

from conftest import run_cli
from image2mood.config import Settings
from image2mood.errors import ModelLoadError, ModelNotFoundError, first_line
from image2mood.models.blip import Captioner
from image2mood.models.blip_rows import greedy
from image2mood.models.clap import ClapEncoder, laion_quantise
from image2mood.models.factory import captioner, clap_encoder, image_encoder
from image2mood.models.loading import MIN_TOKENIZER_ENTRIES, check_tokenizer_size
from image2mood.models.resolve import ResolvedModel, resolve_model
from image2mood.vectors import l2_normalise


def test_tiny_set_loads_every_model_and_runs_it(settings: Settings) -> None:
    clap = clap_encoder(settings)
    assert clap_encoder(settings) is clap  # loaded once per process
    windows = [np.sin(np.linspace(0, 900, clap.window_samples)).astype(np.float32), np.zeros(4000, np.float32)]
    audio = clap.encode_windows(windows)
    text = clap.encode_text(["rainy night in the city", "happy party"])
    assert audio.shape == (2, clap.dim) == (2, 512) and text.shape == (2, 512)
    assert np.allclose(np.linalg.norm(audio, axis=1), 1, atol=1e-5)
    song = clap.encode_audio(windows)
    assert np.allclose(song, (audio.mean(0) / np.linalg.norm(audio.mean(0))), atol=1e-6)

    photo = Image.new("RGB", (320, 200), (200, 120, 40))
    assert image_encoder(settings).encode_images([photo]).shape == (1, image_encoder(settings).dim)
    caption = captioner(settings).caption([photo])
    assert len(caption) == 1 and isinstance(caption[0], str)


def test_caption_tokens_give_their_own_captioner(settings: Settings) -> None:
    short = captioner(settings.model_copy(update={"caption_tokens": 5}))
    long = captioner(settings.model_copy(update={"caption_tokens": 40}))
    assert (short.max_new_tokens, long.max_new_tokens) == (5, 40)
    assert captioner(settings.model_copy(update={"caption_tokens": 5})) is short  # still loaded once


@pytest.mark.parametrize("kind", ["clip", "blip", "clap"])
def test_missing_hub_id_offline_fails_at_once_naming_the_model(kind: str, tmp_path: Path,
                                                               cli_env: dict[str, str]) -> None:
    env = {**cli_env, f"IMAGE2MOOD_{kind.upper()}_MODEL": "nobody/no-such-model", "HF_HUB_CACHE": str(tmp_path)}
    started = time.monotonic()
    result = run_cli(["models", "check"], env, tmp_path, timeout=120)
    assert time.monotonic() - started < 60  # no retry loop against an unreachable hub
    assert result.returncode == 1
    line = next(line for line in result.stdout.splitlines() if "missing" in line)
    assert "nobody/no-such-model" in line and "HF_HUB_OFFLINE=1" in line
    assert "to fix: " in result.stdout and "image2mood models download" in result.stdout


def test_index_with_missing_clap_model_says_what_and_how(tmp_path: Path, cli_env: dict[str, str]) -> None:
    (tmp_path / "music").mkdir()
    env = {**cli_env, "IMAGE2MOOD_CLAP_MODEL": "nobody/no-clap", "HF_HUB_CACHE": str(tmp_path)}
    result = run_cli(["index", str(tmp_path / "music"), "--store", str(tmp_path / "s")], env, tmp_path)
    assert result.returncode == 1
    assert "error: CLAP model 'nobody/no-clap'" in result.stderr and "Traceback" not in result.stderr


def _hub_cache(cache: Path, repo: str, folder: Path) -> None:
    """Lay ``folder`` out as the hub cache does for ``repo`` (snapshots/REV + refs/main)."""
    org, name = repo.split("/")
    root = cache / f"models--{org}--{name}"
    shutil.copytree(folder, root / "snapshots" / "0123abcd")
    (root / "refs").mkdir()
    (root / "refs" / "main").write_text("0123abcd")


def test_hub_ids_load_from_the_cache_offline(tmp_path: Path, tiny_models: Path, cli_env: dict[str, str]) -> None:
    cache = tmp_path / "hub"
    for kind in ("clip", "blip", "clap"):
        _hub_cache(cache, f"tiny/{kind}", tiny_models / kind)
    env = {k: v for k, v in cli_env.items() if k != "IMAGE2MOOD_MODELS"}
    env.update(HF_HUB_CACHE=str(cache), IMAGE2MOOD_CLIP_MODEL="tiny/clip",
               IMAGE2MOOD_BLIP_MODEL="tiny/blip", IMAGE2MOOD_CLAP_MODEL="tiny/clap")
    result = run_cli(["models", "check"], env, tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count(" ok ") == 3 and str(cache / "models--tiny--clap" / "snapshots") in result.stdout

    music = tmp_path / "music"
    music.mkdir()
    from media import write_tone
    write_tone(music / "a.wav", seconds=3, freq=300)
    indexed = run_cli(["index", str(music), "--store", str(tmp_path / "store")], env, tmp_path)
    assert indexed.returncode == 0 and "indexed 1," in indexed.stdout, indexed.stderr


def test_local_folder_errors_name_the_folder_and_what_is_missing(tmp_path: Path, tiny_models: Path) -> None:
    with pytest.raises(ModelNotFoundError, match="does not exist"):
        resolve_model("clap", str(tmp_path / "nowhere"))
    partial = tmp_path / "partial"
    shutil.copytree(tiny_models / "clap", partial)
    (partial / "model.safetensors").unlink()
    with pytest.raises(ModelNotFoundError, match=r"incomplete: missing weights"):
        resolve_model("clap", str(partial))
    # a folder holding another family's files is a load error that names the folder
    wrong = tmp_path / "wrong"
    shutil.copytree(tiny_models / "blip", wrong)
    settings = Settings(_env_file=None, clap_model=str(wrong), store=str(tmp_path / "s"))
    with pytest.raises((ModelLoadError, ModelNotFoundError), match=str(wrong)):
        clap_encoder(settings)


def test_empty_tokenizer_is_refused(tmp_path: Path, tiny_models: Path) -> None:
    broken = tmp_path / "clap"
    shutil.copytree(tiny_models / "clap", broken)
    (broken / "tokenizer.json").write_text(  # parses, as files that lost their contents can
        '{"version": "1.0", "truncation": null, "padding": null, "added_tokens": [], "normalizer": null, '
        '"pre_tokenizer": null, "post_processor": null, "decoder": null, '
        '"model": {"type": "BPE", "vocab": {}, "merges": []}}')
    settings = Settings(_env_file=None, clap_model=str(broken), store=str(tmp_path / "s"))
    encoder = clap_encoder(settings)  # the audio tower alone: what the indexer needs
    with pytest.raises(ModelLoadError, match=rf"tokenizer of CLAP model .*{broken}.* has \d entries"):
        encoder.encode_text(["rain at night"])  # the text tower and its tokenizer load with the first text


def test_tokenizer_size_check_has_one_floor_and_the_model_as_ceiling() -> None:
    def check(size: int) -> None:
        check_tokenizer_size(range(size), 300, "tokenizer T", "RoBERTa", "pass another")

    check(MIN_TOKENIZER_ENTRIES)
    check(300)
    for size in (5, MIN_TOKENIZER_ENTRIES - 1, 301):
        with pytest.raises(ModelLoadError, match=rf"tokenizer T has {size} entries .* 16 to 300: .*RoBERTa.*pass another"):
            check(size)


def test_first_line_of_an_exception() -> None:
    assert first_line(OSError("\n  disk gone  \nTraceback detail")) == "OSError: disk gone"
    assert first_line(KeyError()) == "KeyError"
    assert first_line(ValueError("   ")) == "ValueError"


def _unprocessed(clap: ClapEncoder, windows: list[np.ndarray]) -> np.ndarray:
    """Window vectors straight from the log-mel of ``windows``, with no preprocessing."""
    features = clap.log_mel(windows).to(clap.audio_dtype)  # bf16 where the audio tower runs in bf16
    with torch.inference_mode():
        return l2_normalise(clap.audio(features).float().numpy())


def test_laion_quantise_is_laion_claps_int16_round_trip() -> None:
    x = np.array([2.5, -7.0, 1.0, 0.5, -0.5, 1e-5, 4e-5, -4e-5], dtype=np.float32)
    # laion_clap.training.data: int16_to_float32(float32_to_int16(x)), written out
    expected = np.array([32767, -32767, 32767, 16383, -16383, 0, 1, -1]) / 32767.0
    out = laion_quantise(x)
    assert out.dtype == np.float32 and np.array_equal(out, expected.astype(np.float32))


def test_laion_quantise_matches_laions_float64_division_at_every_int16_step() -> None:
    steps = np.arange(-32767, 32768, dtype=np.int16)
    window = ((steps + 0.4 * np.sign(steps)) / 32767.0).astype(np.float32)  # truncates back to each step
    before = window.copy()
    out = laion_quantise(window)
    assert np.array_equal(out, (steps / 32767.0).astype(np.float32))  # LAION's int16_to_float32
    assert np.array_equal(window, before)  # the caller's samples are left alone


def test_every_window_is_clipped_and_quantised_before_the_model(settings: Settings) -> None:
    clap = clap_encoder(settings)
    t = np.linspace(0, 900, clap.window_samples, dtype=np.float32)
    loud = 3.0 * np.sin(t)  # peaks at ±3
    quiet = (np.random.default_rng(0).standard_normal(24_000) * 1e-4).astype(np.float32)  # a few int16 steps
    got = clap.encode_windows([loud, quiet])

    clipped = np.clip(loud, -1.0, 1.0)
    steps = (np.clip(quiet, -1.0, 1.0) * 32767.0).astype(np.int16)
    reference = [(np.clip(clipped, -1, 1) * 32767.0).astype(np.int16) / 32767.0, steps / 32767.0]
    same = np.abs(got - _unprocessed(clap, [w.astype(np.float32) for w in reference])).max(axis=1)
    moved = np.abs(got - _unprocessed(clap, [loud, quiet])).max(axis=1)
    assert (same < 1e-6).all()  # computed from the quantised windows (the same numbers here: 0.0)
    assert (moved > 1e-5).all()  # the loud window was clipped, the quiet one rounded to int16 steps
    assert np.allclose(clap.encode_audio([loud, quiet]), l2_normalise(got.mean(axis=0)), atol=1e-6)


@pytest.mark.parametrize("samples", [480_000, 150_000, 24_000, 100])
def test_torch_log_mel_matches_clap_feature_extractor(settings: Settings, samples: int) -> None:
    clap = clap_encoder(settings)
    window = (np.random.default_rng(samples).standard_normal(samples) * 0.3).astype(np.float32)
    extractor = ClapFeatureExtractor.from_pretrained(clap.resolved.folder)
    reference = extractor([window], sampling_rate=clap.sample_rate, truncation="rand_trunc",
                          return_tensors="np")["input_features"][0]
    ours = clap.log_mel([window]).numpy()[0]
    assert ours.shape == reference.shape == (1, 1001, 64)
    assert np.abs(ours - reference).max() < 1e-2  # dB


def test_models_check_shows_the_projection_head(tmp_path: Path, tiny_models: Path, cli_env: dict[str, str]) -> None:
    ready = run_cli(["models", "check"], cli_env, tmp_path)
    head_line = f"head  ok       {tiny_models / 'projection.pt'}"
    assert ready.returncode == 0 and head_line in ready.stdout, ready.stdout + ready.stderr
    broken = tmp_path / "head.pt"
    broken.write_bytes(b"not a checkpoint")
    unusable = run_cli(["models", "check"], {**cli_env, "IMAGE2MOOD_PROJECTION": str(broken)}, tmp_path)
    assert unusable.returncode == 1 and "head  unusable" in unusable.stdout and "head.pt" in unusable.stdout
    off = run_cli(["models", "check"], {**cli_env, "IMAGE2MOOD_PROJECTION": "none"}, tmp_path)
    assert off.returncode == 0 and "caption alone" in off.stdout


@pytest.mark.parametrize("precision", ["auto", "fp32"])
def test_greedy_loop_gives_generates_tokens_one_photo_and_a_batch(tiny_models: Path, precision: str) -> None:
    folder = tiny_models / "blip"
    blip = Captioner(ResolvedModel("blip", str(folder), folder), max_new_tokens=12, precision=precision)
    photos = [Image.new("RGB", (320, 200), (200, 120, 40)), Image.new("RGB", (64, 90), (10, 200, 90)),
              Image.fromarray(np.random.default_rng(3).integers(0, 255, (120, 160, 3), dtype=np.uint8))]
    with torch.inference_mode():
        pixels = blip.pixels(photos)
        want = blip.model.generate(pixel_values=pixels, max_new_tokens=12, do_sample=False, num_beams=1,
                                   interpolate_pos_encoding=blip.interpolate)
        features = blip.model.vision_model(pixel_values=pixels, interpolate_pos_encoding=blip.interpolate)[0]
        assert torch.equal(greedy(blip.model.text_decoder, features, 12), want)
    assert blip.caption(photos) == [blip.caption([photo])[0] for photo in photos]

    # The tiny decoder hardly looks at the photo: far-apart features and a boosted [SEP] make rows that end
    # at different steps (their tails padded) or not at all.
    decoder, config = blip.model.text_decoder, blip.model.config.text_config
    scale = torch.tensor([1.0, 30.0, 300.0])[:, None, None]
    features = torch.randn(3, 50, blip.model.config.vision_config.hidden_size,
                           generator=torch.Generator().manual_seed(0)) * scale
    for boost in (0.0, 0.2, 0.1):  # cumulative: [SEP] +0, +0.2, +0.3
        _boost_output_bias(decoder.cls.predictions.decoder, config.sep_token_id, boost)
        for rows in (features[:1], features[2:], features):
            with torch.inference_mode():
                want = decoder.generate(input_ids=torch.full((len(rows), 1), config.bos_token_id), max_new_tokens=12,
                                        eos_token_id=config.sep_token_id, pad_token_id=config.pad_token_id,
                                        encoder_hidden_states=rows, do_sample=False, num_beams=1)
                got = greedy(decoder, rows, 12)
            assert torch.equal(got, want), (boost, got, want)
    padded = {int((row == config.pad_token_id).sum()) for row in got}
    assert (got == config.sep_token_id).sum() == 3 and len(padded) == 2

def test_the_vision_towers_attention_gives_transformers_features(tiny_models: Path) -> None:
    from transformers import BlipForConditionalGeneration

    from image2mood.models.blip import VisionAttention

    folder = tiny_models / "blip"
    blip = Captioner(ResolvedModel("blip", str(folder), folder), precision="fp32")
    eager = BlipForConditionalGeneration.from_pretrained(folder).eval().vision_model
    with torch.no_grad():  # the tiny set's tower barely varies: weights that make its attention matter
        for parameter in eager.parameters():
            parameter.normal_(0, 0.2, generator=torch.Generator().manual_seed(parameter.numel()))
    blip.model.vision_model.load_state_dict(eager.state_dict())  # the same names: only the attention's code differs
    assert all(isinstance(layer.self_attn, VisionAttention) for layer in blip.model.vision_model.encoder.layers)
    photos = [Image.fromarray(np.random.default_rng(seed).integers(0, 255, (90, 120, 3), dtype=np.uint8))
              for seed in range(3)]
    for batch in (photos, photos[:1]):
        with torch.inference_mode():
            pixels = blip.pixels(batch)
            want = eager(pixel_values=pixels, interpolate_pos_encoding=blip.interpolate)[0]
            got = blip.features(batch)
        assert got.shape == want.shape and torch.allclose(got, want, atol=1e-5)
        assert float((want - want.mean()).abs().max()) > 0.1  # features that differ from photo to photo


def _boost_output_bias(head: torch.nn.Module, token: int, boost: float) -> None:
    """Add ``boost`` to one token's output bias, in a float or an int8 Linear layer."""
    with torch.no_grad():
        head.bias[token] += boost


def test_the_clap_text_tower_loads_from_the_whole_model_without_a_report_of_its_audio_weights(
        tiny_models: Path, cli_env: dict[str, str], tmp_path: Path) -> None:
    """transformers prints a report of a checkpoint's keys a model does not take; the text half skips the audio half
    quietly (a fresh process: transformers' log handler holds the stderr it found at import)."""
    probe = ("import sys; from pathlib import Path; from image2mood.models.clap import ClapEncoder; "
             "from image2mood.models.resolve import ResolvedModel; f = Path(sys.argv[1]); "
             "print(ClapEncoder(ResolvedModel('clap', str(f), f)).encode_text(['rain at night']).shape)")
    done = subprocess.run([sys.executable, "-c", probe, str(tiny_models / "clap")], env=cli_env, cwd=tmp_path,
                          capture_output=True, text=True, check=False)
    assert done.returncode == 0 and done.stdout.strip() == "(1, 512)", done.stderr
    assert "audio_model" not in done.stderr and "LOAD REPORT" not in done.stderr, done.stderr
