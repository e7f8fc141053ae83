"""The fast paths: first songs streamed before the caption, the photo memo, reduced precision within its
stated cosine of fp32, BLIP at a smaller size, and reruns that trust an unchanged file's size and mtime."""

from __future__ import annotations

import http.client
import io
import json
import os
import subprocess
import sys
import threading
import uuid
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import run_cli, serving

from image2mood.config import Settings
from image2mood.library import song_id, store_info
from image2mood.models.blip import CaptionRows, Captioner
from image2mood.models.clap import ClapEncoder
from image2mood.models import factory
from image2mood.models.factory import clap_encoder
from image2mood.models.precision import Int8Linear, cpu_has_fast_bf16
from image2mood.models.resolve import resolve_model
from image2mood.photo_memo import photo_key
from image2mood.recommend import Recommender
from image2mood.store import open_store
from indexer.pipeline import Indexer
from media import write_tone
from media_images import write_photo
from service.app import create_app

LOGITS_COSINE = 0.99  # BLIP's teacher-forced next-token logits, reduced precision against fp32
VECTOR_COSINE = 0.995  # BLIP's image features, reduced precision against fp32
QUERY_COSINE = 0.995  # a photo's query vector, reduced precision against fp32
BF16_CLAP_COSINE = 0.999  # CLAP window vectors, bf16 against fp32


def _cosine(a: torch.Tensor | np.ndarray, b: torch.Tensor | np.ndarray) -> float:
    a, b = torch.as_tensor(a).float().flatten(), torch.as_tensor(b).float().flatten()
    return float(torch.nn.functional.cosine_similarity(a, b, dim=0))


@pytest.fixture(scope="module")
def library(tmp_path_factory: pytest.TempPathFactory, tiny_models: Path) -> Settings:
    """Six indexed tones in an embedded store, with the tiny models and their projection head."""
    root = tmp_path_factory.mktemp("perf-library")
    for i in range(6):
        write_tone(root / f"tone{i}.flac", seconds=2 + i, freq=200 + 90 * i, tags={"title": f"Tone {i}"})
    settings = Settings(_env_file=None, models=tiny_models, store=str(root / "store"), windows_per_song=1)
    encoder = clap_encoder(settings)
    with open_store(settings.store, info=store_info(encoder, settings)) as store:
        assert Indexer(store, encoder, settings, warn=lambda line: None).run([root]).indexed == 6
    return settings


def _form(photo: bytes) -> dict:
    return {"image": (io.BytesIO(photo), "photo.jpg")}


# ------------------------------------------------------------------ first songs, streamed


class GatedCaptioner:
    """The real captioner, made to wait until the test lets it caption: songs that reach the client while it
    waits were provably found before the caption was made. It never waits its way into a pass: after
    ``timeout`` seconds it fails the answer."""

    def __init__(self, real: Captioner, timeout: float = 60) -> None:
        self.real, self.timeout, self.gate, self.calls = real, timeout, threading.Event(), 0
        self.language = real.language

    def rows(self) -> CaptionRows:
        """The captions the answer joins (continuous batching), once the test lets it have them."""
        self.calls += 1
        if not self.gate.wait(self.timeout):
            raise AssertionError("the caption was asked for before the client had read the first songs")
        return self.real.rows()


def test_stream_sends_the_image_routes_songs_before_the_caption_then_the_plain_answer(
        library: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    photo = write_photo(tmp_path / "p.jpg", color=(30, 140, 220)).read_bytes()
    gated = GatedCaptioner(factory.captioner(library), timeout=20)
    monkeypatch.setattr(factory, "captioner", lambda settings: gated)
    app = create_app(library)
    try:
        client = app.test_client()
        streamed = client.post("/api/recommend?stream=1", data=_form(photo), content_type="multipart/form-data",
                               buffered=False)
        assert streamed.status_code == 200 and streamed.mimetype == "application/x-ndjson"
        chunks = iter(streamed.response)
        first = json.loads(next(chunks))  # arrives while the captioner is still held back
        assert first["event"] == "songs", first
        gated.gate.set()
        rest = [json.loads(line) for chunk in chunks for line in chunk.decode().splitlines() if line]
        plain = client.post("/api/recommend", data=_form(photo), content_type="multipart/form-data").get_json()
    finally:
        app.extensions["image2mood"].store.close()

    assert first["route"] == "image" and first["songs"] and "caption" not in first
    assert [event["event"] for event in rest] == ["answer"] and gated.calls >= 1
    answer = rest[0]
    assert answer["caption"] and answer["route"] == "fused"
    del answer["event"]
    assert answer.keys() == plain.keys()  # the plain answer's shape
    assert [s["id"] for s in answer["songs"]] == [s["id"] for s in plain["songs"]]
    assert answer["caption"] == plain["caption"]


def test_without_a_projection_head_the_stream_is_the_answer_alone(library: Settings, tmp_path: Path) -> None:
    photo = write_photo(tmp_path / "p.jpg", color=(90, 20, 20)).read_bytes()
    app = create_app(library.model_copy(update={"projection": "none"}))
    try:
        response = app.test_client().post("/api/recommend?stream=1", data=_form(photo),
                                          content_type="multipart/form-data")
    finally:
        app.extensions["image2mood"].store.close()
    events = [json.loads(line) for line in response.get_data(as_text=True).splitlines()]
    assert [e["event"] for e in events] == ["answer"] and events[0]["route"] == "caption"


def test_a_bad_photo_is_still_a_plain_400_with_stream(library: Settings) -> None:
    app = create_app(library)
    try:
        response = app.test_client().post("/api/recommend?stream=1", data=_form(b"not a photo"),
                                          content_type="multipart/form-data")
    finally:
        app.extensions["image2mood"].store.close()
    assert response.status_code == 400 and "photo.jpg" in response.get_json()["error"]["message"]


def _multipart(photo: bytes) -> tuple[bytes, str]:
    boundary = uuid.uuid4().hex
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"image\"; filename=\"p.jpg\"\r\n"
            "Content-Type: image/jpeg\r\n\r\n").encode() + photo + f"\r\n--{boundary}--\r\n".encode()
    return body, f"multipart/form-data; boundary={boundary}"


def test_real_server_streams_songs_first(library: Settings, tiny_models: Path, cli_env: dict[str, str],
                                         tmp_path: Path) -> None:
    music = tmp_path / "music"
    music.mkdir()
    for i in range(3):
        write_tone(music / f"t{i}.flac", seconds=2 + i, freq=300 + 100 * i)
    store = tmp_path / "store"
    indexed = run_cli(["index", str(music), "--store", str(store)], cli_env, tmp_path)
    assert indexed.returncode == 0, indexed.stderr
    body, content_type = _multipart(write_photo(tmp_path / "p.jpg", color=(10, 200, 90)).read_bytes())
    with serving(store, cli_env, tmp_path) as url:
        host, port = url.removeprefix("http://").split(":")
        connection = http.client.HTTPConnection(host, int(port), timeout=120)
        connection.request("POST", "/api/recommend?stream=1", body=body, headers={"Content-Type": content_type})
        response = connection.getresponse()
        assert response.status == 200 and response.getheader("Content-Type") == "application/x-ndjson"
        assert response.getheader("Transfer-Encoding") == "chunked"  # sent as it comes, not as one body
        first = json.loads(response.readline())
        last = json.loads(response.readline())
        assert response.read() == b""
        connection.close()
    assert first["event"] == "songs" and "caption" not in first and len(first["songs"]) == 3
    assert last["event"] == "answer" and last["caption"] and len(last["songs"]) == 3


# ------------------------------------------------------------------ the photo memo


def test_a_photo_seen_again_skips_the_models(library: Settings) -> None:
    photo = Image.new("RGB", (320, 240), (240, 200, 20))
    with open_store(library.store, info=None) as store:
        recommender = Recommender(library, store)
        first = recommender.for_photo(photo)
        remembered = recommender.memo._parts[photo_key(photo)]
        assert remembered["caption"] == first.caption and set(remembered) >= {"caption", "clip"}
        remembered["caption"] = "a remembered caption"  # proof that the second answer did not caption again
        again = recommender.for_photo(photo)
        other = recommender.for_photo(Image.new("RGB", (320, 240), (240, 200, 21)))  # one pixel value off
    assert again.caption == "a remembered caption"
    assert other.caption != "a remembered caption"


# ------------------------------------------------------------------ BLIP: size and precision


def test_caption_image_size_is_capped_by_the_models_own_and_zero_means_its_own(tiny_models: Path) -> None:
    blip = resolve_model("blip", str(tiny_models / "blip"))  # the tiny BLIP's own size is 64
    photo = Image.new("RGB", (300, 200), (80, 80, 200))
    small = Captioner(blip, image_size=32, precision="fp32")
    assert small.pixels([photo]).shape[-2:] == (32, 32) and small.interpolate
    assert small.caption([photo])[0] is not None  # generates through the interpolated position embeddings
    assert Captioner(blip, image_size=224, precision="fp32").image_size == 64
    assert Captioner(blip, image_size=0, precision="fp32").image_size == 64


@pytest.mark.parametrize("precision", ["bf16", "int8", "auto"])
def test_reduced_precision_keeps_blips_features_and_logits_within_their_cosine_of_fp32(
        tiny_models: Path, precision: str) -> None:
    blip = resolve_model("blip", str(tiny_models / "blip"))
    fp32 = Captioner(blip, precision="fp32")
    reduced = Captioner(blip, precision=precision)
    assert not (fp32.bf16 or fp32.int8)
    assert reduced.bf16 == (precision == "bf16")  # on a CPU, auto is int8 (fp32 activations)
    assert reduced.int8 == (precision != "bf16")
    int8_layers = [sum(isinstance(m, Int8Linear) for m in tower.modules())
                   for tower in (reduced.model.vision_model, reduced.model.text_decoder)]
    assert all(int8_layers) if reduced.int8 else not any(int8_layers)
    rng = np.random.default_rng(3)
    photos = [Image.fromarray((rng.random((96, 128, 3)) * 255).astype(np.uint8)) for _ in range(2)]
    tokens = fp32.processor.tokenizer(["a photo of a dog on the beach at sunset"] * 2, return_tensors="pt")
    outputs = []
    for captioner in (fp32, reduced):
        with torch.inference_mode():
            out = captioner.model(pixel_values=captioner.pixels(photos), input_ids=tokens["input_ids"],
                                  attention_mask=tokens["attention_mask"])
        outputs.append((out.image_embeds.float(), out.logits.float()))
    (image32, logits32), (image_r, logits_r) = outputs
    assert _cosine(image32, image_r) >= VECTOR_COSINE
    for row32, row_r in zip(logits32.flatten(0, 1), logits_r.flatten(0, 1), strict=True):
        assert _cosine(row32, row_r) >= LOGITS_COSINE
    assert reduced.caption(photos) and all(isinstance(c, str) for c in reduced.caption(photos))


@pytest.mark.parametrize("precision", ["bf16", "int8", "auto"])
def test_reduced_precision_keeps_query_vectors_within_their_cosine_of_fp32(library: Settings, precision: str) -> None:
    rng = np.random.default_rng(11)
    photos = [Image.fromarray((rng.random((120, 160, 3)) * 255).astype(np.uint8)) for _ in range(3)]
    with open_store(library.store, info=None) as store:
        answers = [[Recommender(library.model_copy(update={"precision": p}), store).for_photo(photo)
                    for photo in photos] for p in ("fp32", precision)]
    for full, reduced in zip(*answers, strict=True):
        assert _cosine(full.vector, reduced.vector) >= QUERY_COSINE


def test_bf16_keeps_clap_window_vectors_within_their_cosine_of_fp32(tiny_models: Path) -> None:
    clap = resolve_model("clap", str(tiny_models / "clap"))
    fp32, bf16 = ClapEncoder(clap, precision="fp32"), ClapEncoder(clap, precision="bf16")
    rng = np.random.default_rng(5)
    windows = [(0.3 * np.sin(np.arange(fp32.window_samples) * f) + 0.05 * rng.standard_normal(fp32.window_samples))
               .astype(np.float32) for f in (0.01, 0.03, 0.07)]
    for a, b in zip(fp32.encode_windows(windows), bf16.encode_windows(windows), strict=True):
        assert _cosine(a, b) >= BF16_CLAP_COSINE


# ------------------------------------------------------------------ reruns trust size and mtime


def _index(settings: Settings, root: Path) -> tuple[int, int]:
    encoder = clap_encoder(settings)
    with open_store(settings.store, info=store_info(encoder, settings)) as store:
        report = Indexer(store, encoder, settings, warn=lambda line: None).run([root])
    return report.indexed, report.unchanged


def _stored(settings: Settings, path: Path):
    with open_store(settings.store, info=None) as store:
        return store.get([song_id(path)], with_vectors=True)[0]


def test_a_file_with_its_size_and_mtime_unchanged_is_not_read_again(tiny_models: Path, tmp_path: Path) -> None:
    root = tmp_path / "music"
    root.mkdir()
    quiet, loud, touched = (write_tone(root / f"{name}.wav", seconds=2, freq=f, amplitude=a)
                            for name, f, a in (("quiet", 300, 0.1), ("loud", 500, 0.6), ("touched", 700, 0.4)))
    settings = Settings(_env_file=None, models=tiny_models, store=str(tmp_path / "store"), windows_per_song=1)
    assert _index(settings, root) == (3, 0)
    before = _stored(settings, quiet)
    assert (before.size, before.mtime_ns) == (quiet.stat().st_size, quiet.stat().st_mtime_ns)

    # New content of the same size, the old mtime put back: trusted as unchanged, so neither hashed nor embedded.
    stat = quiet.stat()
    quiet.write_bytes(loud.read_bytes())
    os.utime(quiet, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    # The same content with a new mtime: hashed, found unchanged, and its new mtime kept for the next run.
    os.utime(touched, ns=(touched.stat().st_atime_ns, touched.stat().st_mtime_ns + 5_000_000_000))
    assert _index(settings, root) == (0, 3)
    after = _stored(settings, quiet)
    assert after.content_hash == before.content_hash  # the new bytes were never hashed
    assert np.array_equal(after.vector, before.vector)  # nor embedded
    assert _stored(settings, touched).mtime_ns == touched.stat().st_mtime_ns

    # Once the mtime says so, the changed file is hashed and embedded again.
    os.utime(quiet, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))
    assert _index(settings, root) == (1, 2)
    assert _stored(settings, quiet).content_hash == _stored(settings, loud).content_hash


# ------------------------------------------------------------------ full coverage


def test_index_windows_all_embeds_every_window_and_records_it(cli_env: dict[str, str], tmp_path: Path) -> None:
    music = tmp_path / "music"
    music.mkdir()
    song = write_tone(music / "long.flac", seconds=35, freq=330)  # four 10-s windows, the last one short
    store = tmp_path / "store"
    result = run_cli(["index", str(music), "--store", str(store), "--windows", "all"], cli_env, tmp_path)
    assert result.returncode == 0, result.stderr
    assert "indexed 1," in result.stdout
    with open_store(str(store), info=None) as opened:
        assert opened.info.windowing == "allx10.0s"
        stored = opened.get([song_id(song)], with_vectors=True)[0]
    settings = Settings(_env_file=None, models=Path(cli_env["IMAGE2MOOD_MODELS"]), windows_per_song=0)
    encoder = clap_encoder(settings)
    assert encoder.bf16 == cpu_has_fast_bf16()  # full coverage runs CLAP's audio tower in bf16 where it is fast
    from image2mood.audio import decode_windows

    windows = decode_windows(song, sample_rate=encoder.sample_rate, max_windows=64).windows
    assert len(windows) == 4
    assert _cosine(stored.vector, encoder.encode_audio(windows)) > 0.9999
    again = run_cli(["index", str(music), "--store", str(store), "--windows", "all"], cli_env, tmp_path)
    assert again.returncode == 0 and "indexed 0, unchanged 1," in again.stdout
    assert "loading CLAP" not in again.stderr  # nothing changed: the model is not even loaded
    refused = run_cli(["index", str(music), "--store", str(store), "--windows", "0"], cli_env, tmp_path)
    assert refused.returncode == 2 and "--windows" in refused.stderr


def test_bf16_keeps_clip_image_and_clap_text_vectors_within_their_cosine_of_fp32(tiny_models: Path) -> None:
    """The query path's other two towers in bf16 (what `auto` picks on a CPU with fast bf16)."""
    from image2mood.models.clip import ImageEncoder

    clip = resolve_model("clip", str(tiny_models / "clip"))
    clip32, clip16 = ImageEncoder(clip, precision="fp32"), ImageEncoder(clip, precision="bf16")
    assert clip16.image_dtype == torch.bfloat16 and clip32.image_dtype == torch.float32
    rng = np.random.default_rng(3)
    photos = [Image.fromarray((rng.random((90, 120, 3)) * 255).astype(np.uint8)) for _ in range(3)]
    for a, b in zip(clip32.encode_images(photos), clip16.encode_images(photos), strict=True):
        assert _cosine(a, b) >= VECTOR_COSINE
    clap = resolve_model("clap", str(tiny_models / "clap"))
    texts = ["rain on a quiet night", "a loud summer party", "sunrise over the sea"]
    text32 = ClapEncoder(clap, text_precision="fp32").encode_text(texts)
    text16 = ClapEncoder(clap, text_precision="bf16")
    text16.encode_windows([np.zeros(4800, np.float32)])  # as the indexer does: audio only
    assert text16._text is None  # the text tower is not even loaded
    vectors16 = text16.encode_text(texts)
    assert next(text16.text.model.parameters()).dtype == torch.bfloat16
    for a, b in zip(text32, vectors16, strict=True):
        assert _cosine(a, b) >= VECTOR_COSINE


def test_clap_text_tower_takes_int8_weights_on_a_cpu_at_its_first_use(tiny_models: Path) -> None:
    """``auto`` on a CPU: the text tower loads with int8 Linear layers once text is embedded (never for audio
    alone), its vectors within their cosine of fp32."""
    clap = resolve_model("clap", str(tiny_models / "clap"))
    texts = ["rain on a quiet night", "a loud summer party", "sunrise over the sea"]
    text32 = ClapEncoder(clap, text_precision="fp32").encode_text(texts)
    auto = ClapEncoder(clap, text_precision="auto")
    auto.encode_windows([np.zeros(4800, np.float32)])
    assert auto._text is None and not any(isinstance(m, Int8Linear) for m in auto.audio.modules())
    vectors = auto.encode_text(texts)
    assert sum(isinstance(m, Int8Linear) for m in auto.text.model.text_model.modules()) > 0
    assert isinstance(auto.text.model.text_projection.linear1, Int8Linear)
    for a, b in zip(text32, vectors, strict=True):
        assert _cosine(a, b) >= VECTOR_COSINE
    assert not np.array_equal(text32, vectors)  # int8 really ran


# How an exit skips the interpreter's last full collection: everything is frozen out of the collector's reach,
# on the error paths too (a command that fails after loading torch exits as slowly otherwise).
_FROZEN = """
import gc, sys
from image2mood_cli.main import main
sys.argv = ["image2mood", *sys.argv[1:]]
try:
    main()
finally:
    print(gc.get_freeze_count() > 1000)
"""


@pytest.mark.parametrize("args", [["--version"], ["index", "/no/such/folder"]])
def test_the_command_leaves_its_objects_out_of_the_last_collection(args: list[str], cli_env: dict[str, str]) -> None:
    done = subprocess.run([sys.executable, "-c", _FROZEN, *args], env=cli_env, capture_output=True, text=True,
                          timeout=120)
    assert done.stdout.splitlines()[-1] == "True", (done.stdout, done.stderr)
