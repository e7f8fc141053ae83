"""A video to post: the renderer (image2mood.video), and the helpers that read a video back, which
tests/test_video_service.py shares.

Every video is rendered by the real ffmpeg and read back by ffprobe/ffmpeg: its codecs, size and length,
its sound against the song's clip (a chirp: each moment of it sounds different, so a clip taken from the
wrong place does not line up), and a frame against the photo.
"""

from __future__ import annotations

import io
import json
import secrets
import subprocess
import tempfile
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from PIL import Image, ImageDraw

from image2mood import video
from image2mood.video import Clip, ClipTooLongError, RenderError

RATE = 22050
LONG_S = 40.0
SHORT_S = 6.0
CLIP_S = 15.0  # the fallback clip's length (IMAGE2MOOD_HIGHLIGHT_SECONDS's default)
PSNR_FLOOR_DB = 30.0
"""A frame's photo area against the photo resized the same way: x264 ultrafast at yuv420p keeps a smooth
photo at about 38-42 dB here; another photo (the same one mirrored) scores about 12 dB."""
LAG_TOLERANCE_S = 0.005
SIZES = {"story": (1080, 1920), "square": (1080, 1080), "wide": (1920, 1080)}  # as the issue names them


# ---------------------------------------------------------------- media


def chirp(seconds: float) -> np.ndarray:
    """A sweep from 100 Hz to 3 kHz (exponential): every stretch of it is unlike every other."""
    t = np.arange(int(seconds * RATE)) / RATE
    k = np.log(3000 / 100) / seconds
    return (0.5 * np.sin(2 * np.pi * 100 * (np.exp(k * t) - 1) / k)).astype(np.float32)


def write_song(path: Path, seconds: float, title: str) -> np.ndarray:
    samples = chirp(seconds)
    path.parent.mkdir(parents=True, exist_ok=True)
    with sf.SoundFile(path, "w", RATE, 1, format="FLAC") as f:
        f.title, f.artist = title, "Test"
        f.write(samples)
    return samples


def make_photo() -> tuple[bytes, Image.Image, bytes]:
    """An 800×600 JPEG with shapes and gradients, its decoded pixels, and a marker only its bytes hold."""
    w, h = 800, 600
    x, y = np.meshgrid(np.linspace(0, 1, w), np.linspace(0, 1, h))
    pixels = np.stack([200 * x + 30, 160 * y + 40, 120 * (1 - x) + 60], axis=-1).astype(np.uint8)
    image = Image.fromarray(pixels)
    draw = ImageDraw.Draw(image)
    draw.ellipse((80, 60, 330, 310), fill=(250, 210, 60))
    draw.rectangle((450, 300, 740, 540), fill=(20, 60, 140))
    draw.polygon([(500, 80), (700, 120), (560, 260)], fill=(200, 30, 60))
    marker = b"image2mood-test-" + secrets.token_hex(16).encode()
    out = io.BytesIO()
    image.save(out, format="JPEG", quality=92, comment=marker)
    data = out.getvalue()
    return data, Image.open(io.BytesIO(data)).convert("RGB"), marker


PHOTO_BYTES, PHOTO, MARKER = make_photo()


# ---------------------------------------------------------------- reading a video back


def probe(path: Path) -> dict:
    out = subprocess.run(["ffprobe", "-v", "error", "-show_entries",
                          "stream=codec_type,codec_name,width,height,pix_fmt:format=duration", "-of", "json",
                          str(path)], capture_output=True, check=True, timeout=60)
    return json.loads(out.stdout)


def assert_video(path: Path, fmt: str, seconds: float) -> None:
    """H.264 (yuv420p) and AAC, the format's size, the clip's length, the index before the data (+faststart)."""
    info = probe(path)
    streams = {s["codec_type"]: s for s in info["streams"]}
    assert streams["video"]["codec_name"] == "h264" and streams["video"]["pix_fmt"] == "yuv420p", info
    assert (streams["video"]["width"], streams["video"]["height"]) == SIZES[fmt], info
    assert streams["audio"]["codec_name"] == "aac", info
    assert abs(float(info["format"]["duration"]) - seconds) <= 0.2, info
    data = path.read_bytes()
    assert data.index(b"moov") < data.index(b"mdat"), "the index is not at the front: +faststart missing"


def audio_of(path: Path) -> np.ndarray:
    out = subprocess.run(["ffmpeg", "-nostdin", "-v", "error", "-i", str(path), "-map", "0:a:0", "-ac", "1",
                          "-ar", str(RATE), "-f", "f32le", "-"], capture_output=True, check=True, timeout=60)
    return np.frombuffer(out.stdout, dtype="<f4")


def assert_audio_is(path: Path, song: np.ndarray, clip: Clip) -> None:
    """The video's sound is the song's clip: cross-correlated within ±0.25 s, the peak is at lag 0."""
    heard = audio_of(path).astype(np.float64)
    margin = int(0.25 * RATE)
    first = int(round(clip.start * RATE))
    padded = np.concatenate([np.zeros(margin), song.astype(np.float64), np.zeros(margin + len(heard))])
    around = padded[first: first + len(heard) + 2 * margin]  # the clip with 0.25 s either side
    size = 1 << int(np.ceil(np.log2(len(around) + len(heard))))
    spectrum = np.fft.rfft(around, size) * np.conj(np.fft.rfft(heard, size))
    scores = np.fft.irfft(spectrum, size)[: 2 * margin + 1]  # lag -0.25 s .. +0.25 s
    best = int(np.argmax(scores))
    lag_s = (best - margin) / RATE
    expected = around[best: best + len(heard)]
    similarity = scores[best] / (np.linalg.norm(heard) * np.linalg.norm(expected) + 1e-12)
    assert abs(lag_s) <= LAG_TOLERANCE_S and similarity > 0.8, (
        f"the sound is the song from {clip.start + lag_s:.3f} s (similarity {similarity:.2f}), "
        f"not from {clip.start:.3f} s")


def frame_at(path: Path, seconds: float, size: tuple[int, int]) -> np.ndarray:
    out = subprocess.run(["ffmpeg", "-nostdin", "-v", "error", "-ss", f"{seconds}", "-i", str(path),
                          "-frames:v", "1", "-f", "rawvideo", "-pix_fmt", "rgb24", "-"],
                         capture_output=True, check=True, timeout=60)
    return np.frombuffer(out.stdout, np.uint8).reshape(size[1], size[0], 3)


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float(10 * np.log10(255**2 / max(mse, 1e-9)))


def assert_frame_shows(path: Path, fmt: str, photo: Image.Image, box: tuple[int, int, int, int], at: float) -> None:
    """The frame at ``at`` s holds ``photo`` resized into ``box`` (left, top, right, bottom)."""
    frame = frame_at(path, at, SIZES[fmt])[box[1]:box[3], box[0]:box[2]]
    resized = photo.resize((box[2] - box[0], box[3] - box[1]), Image.Resampling.LANCZOS)
    mirrored = resized.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    score = psnr(frame, np.asarray(resized))
    assert score >= PSNR_FLOOR_DB, f"the frame is not the photo: PSNR {score:.1f} dB < {PSNR_FLOOR_DB} dB"
    assert psnr(frame, np.asarray(mirrored)) < PSNR_FLOOR_DB  # the measure tells photos apart


# The 800×600 photo fitted whole: 1.35× into 1080 wide (story, square), 1.8× into 1080 high (wide).
BOXES = {"story": (0, 555, 1080, 1365), "square": (0, 135, 1080, 945), "wide": (240, 0, 1680, 1080)}


# ---------------------------------------------------------------- the renderer


@pytest.fixture
def private_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """tempfile's folder for this test alone, to see what a render leaves there."""
    folder = tmp_path / "tmp"
    folder.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(folder))
    return folder


@pytest.fixture(scope="module")
def long_song(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, np.ndarray]:
    path = tmp_path_factory.mktemp("songs") / "long.flac"
    return path, write_song(path, LONG_S, "Long Chirp")


@pytest.mark.parametrize("fmt", ["story", "square", "wide"])
def test_render_writes_the_format_with_the_clip_and_the_photo(fmt: str, long_song, private_tmp: Path,
                                                              tmp_path: Path) -> None:
    path, samples = long_song
    clip = Clip(start=21.3, duration=3.0)
    out = tmp_path / f"{fmt}.mp4"
    video.render(PHOTO, path, clip, out, fmt=fmt)
    assert_video(out, fmt, clip.duration)
    assert_audio_is(out, samples, clip)
    assert_frame_shows(out, fmt, PHOTO, BOXES[fmt], at=1.5)
    assert list(private_tmp.iterdir()) == [], "the render left its temporary folder behind"


def test_zoom_grows_the_picture_and_a_still_video_stays_still(long_song, tmp_path: Path) -> None:
    path, _ = long_song
    clip = Clip(start=5.0, duration=4.0)
    still, zoomed = tmp_path / "still.mp4", tmp_path / "zoom.mp4"
    video.render(PHOTO, path, clip, still, fmt="square")
    video.render(PHOTO, path, clip, zoomed, fmt="square", zoom=True)
    assert_video(zoomed, "square", clip.duration)
    size = SIZES["square"]
    assert psnr(frame_at(still, 0.8, size), frame_at(still, 3.0, size)) > 40
    early, late = frame_at(zoomed, 0.8, size), frame_at(zoomed, 3.0, size)
    assert psnr(early, late) < 30, "the zoomed video does not move"


def test_a_clip_past_the_songs_end_is_a_clear_error_and_leaves_nothing(long_song, private_tmp: Path,
                                                                      tmp_path: Path) -> None:
    path, _ = long_song
    out = tmp_path / "late.mp4"
    with pytest.raises(ClipTooLongError, match=r"the file of “Late” is 40\.0 s long, shorter than its clip "
                       r"\(30–45 s\): it changed since it was indexed; re-index it"):
        video.render(PHOTO, path, Clip(30.0, 15.0), out, name="“Late”")
    assert not out.exists() and list(private_tmp.iterdir()) == []


def test_the_fallback_clip_is_the_middle_and_a_short_song_is_refused() -> None:
    assert video.clip_for({"title": "A"}, 40.0, 15.0) == Clip(12.5, 15.0)
    assert video.clip_for({"title": "A", "highlight": {"start": 3.0, "end": 18.0, "score": 0.4}}, 40.0, 9.0) \
        == Clip(3, 15)
    with pytest.raises(ClipTooLongError, match=r"“Brief” is 6\.0 s long, too short for a 15-s clip"):
        video.clip_for({"title": "Brief"}, SHORT_S, 15.0)


def test_a_missing_song_file_and_a_missing_ffmpeg_are_named(long_song, tmp_path: Path,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(RenderError, match="the file of song X is gone; re-index"):
        video.render(PHOTO, tmp_path / "gone.flac", Clip(0, 3), tmp_path / "x.mp4", name="song X")
    empty = tmp_path / "bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    with pytest.raises(RenderError, match="ffmpeg is missing; install ffmpeg"):
        video.render(PHOTO, long_song[0], Clip(0, 3), tmp_path / "x.mp4")


def test_an_unknown_format_is_refused(long_song, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unknown video format 'tall': use one of story, square, wide"):
        video.render(PHOTO, long_song[0], Clip(0, 3), tmp_path / "x.mp4", fmt="tall")


def test_ffmpegs_time_and_the_videos_size_are_bounded(long_song, private_tmp: Path, tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    out = tmp_path / "bounded.mp4"
    monkeypatch.setattr(video, "RENDER_TIMEOUT_S", 0.05)
    with pytest.raises(RenderError, match=r"the video of “Slow” took over 0.05 s and was stopped"):
        video.render(PHOTO, long_song[0], Clip(0, 3), out, name="“Slow”")
    monkeypatch.setattr(video, "RENDER_TIMEOUT_S", 60.0)
    monkeypatch.setattr(video, "MAX_VIDEO_BYTES", 50_000)
    with pytest.raises(RenderError, match=r"the video of “Big” grew past"):
        video.render(PHOTO, long_song[0], Clip(0, 3), out, name="“Big”")
    assert not out.exists() and list(private_tmp.iterdir()) == []
