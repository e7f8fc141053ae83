"""Decoding, windowing, hashing, file discovery and tags, on files generated in every common format."""

from __future__ import annotations

import hashlib
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from media import write_audio, write_damaged_mp3, write_tone

from image2mood import decoders as decoders_module
from image2mood.audio import decode_windows, window_starts
from image2mood.files import SUPPORTED_SUFFIXES, content_hash, iter_audio_files
from image2mood.errors import AudioDecodeError
from image2mood.tags import Tags, read_tags

FORMATS = [".wav", ".flac", ".ogg", ".mp3", ".opus", ".m4a"]
TAGGED = [".flac", ".ogg", ".mp3", ".opus", ".m4a", ".wav"]  # the WAV's INFO chunk through libsndfile
RATE = 48000
WINDOW = 480000
TONE_HZ = 1234.0
TAGS = {"title": "  Blue in Green ", "artist": "Miles Davis", "album": "Kind of Blue", "genre": "Jazz"}


def chirp(t: np.ndarray) -> np.ndarray:
    """A 200 Hz → 3 kHz sweep over 25 s: any two stretches differ, so a misplaced window shows."""
    return 0.5 * np.sin(2 * np.pi * (200 * t + 2800 / 50 * t * t))


@pytest.fixture(scope="module")
def tones(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A 25-s stereo 1234-Hz tone at 44.1 kHz in every format, tagged where the format has tags."""
    folder = tmp_path_factory.mktemp("tones")
    return {s: write_tone(folder / f"tone{s}", 25, TONE_HZ, channels=2, tags=TAGS) for s in FORMATS}


@pytest.fixture(scope="module")
def chirps(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("chirps")
    samples = chirp(np.arange(25 * 44100) / 44100).astype(np.float32)
    return {s: write_audio(folder / f"chirp{s}", [samples], 44100) for s in FORMATS}


def ramp(seconds: float, rate: int) -> np.ndarray:
    """Sample i holds i / 2**21, exactly representable in float32: a window's values tell where it starts."""
    return np.arange(round(seconds * rate), dtype=np.float32) / 2**21


@pytest.mark.parametrize("suffix", FORMATS)
def test_every_format_decodes_to_mono_windows_at_48k(tones: dict[str, Path], suffix: str) -> None:
    decoded = decode_windows(tones[suffix])
    assert decoded.duration == pytest.approx(25.0, abs=0.1)
    assert len(decoded.windows) == 3
    for window in decoded.windows:
        assert window.dtype == np.float32 and window.shape == (WINDOW,)
        peak = float(np.abs(window).max())
        assert 0.45 < peak < 0.6  # both channels hold the tone at 0.5: their mean, not their sum
        spectrum = np.abs(np.fft.rfft(window))
        assert np.argmax(spectrum) * RATE / WINDOW == pytest.approx(TONE_HZ, abs=1.0)
    assert not decoded.silent


@pytest.mark.parametrize("suffix", FORMATS)
def test_decoding_is_deterministic(tones: dict[str, Path], suffix: str) -> None:
    first, second = decode_windows(tones[suffix]), decode_windows(tones[suffix])
    assert len(first.windows) == len(second.windows)
    assert all(np.array_equal(a, b) for a, b in zip(first.windows, second.windows, strict=True))


@pytest.mark.parametrize("suffix", FORMATS)
def test_windows_sit_where_the_rule_puts_them(chirps: dict[str, Path], suffix: str) -> None:
    """25 s, 3 windows: the centres of three equal parts, clamped: 0 s, 7.5 s, 15 s. Codec delay is undone."""
    decoded = decode_windows(chirps[suffix])
    for window, start in zip(decoded.windows, [0, 360000, 720000], strict=True):
        probe = window[5000:9000]
        reference = chirp((start + 5000 + np.arange(-1000, 4000 + 1000)) / RATE)
        lag = int(np.argmax(np.correlate(reference, probe, mode="valid"))) - 1000
        assert abs(lag) <= 48  # within 1 ms


@pytest.mark.parametrize(("suffix", "rate", "tolerance"), [(".wav", 48000, 0), (".wav", 32000, 1), (".mka", 48000, 48)])
def test_ramp_pins_window_starts(tmp_path: Path, suffix: str, rate: int, tolerance: int) -> None:
    """A ramp shows each window's first sample: exact without resampling (libsndfile), to 1 ms via ffmpeg."""
    samples = ramp(25, rate)
    path = tmp_path / f"ramp{suffix}"
    if suffix == ".wav":
        sf.write(path, samples, rate, subtype="FLOAT")
    else:
        write_audio(path, [samples], rate)  # float PCM in Matroska: read by the ffmpeg backend
    decoded = decode_windows(path)
    for window, start in zip(decoded.windows, [0, 360000, 720000], strict=True):
        found = float(window[1000]) * 2**21 * RATE / rate - 1000
        assert abs(found - start) <= tolerance
    if tolerance == 0:
        assert all(
            np.array_equal(w, samples[s : s + WINDOW])
            for w, s in zip(decoded.windows, [0, 360000, 720000], strict=True)
        )


@pytest.mark.parametrize(
    ("suffix", "codec"),
    [
        (".mp3", ["libmp3lame", "-b:a", "32k"]),
        (".ogg", ["libvorbis", "-q:a", "0"]),
        (".opus", ["libopus"]),
        (".flac", ["flac"]),
    ],
)
def test_seeking_does_not_change_the_audio(tmp_path: Path, suffix: str, codec: list[str]) -> None:
    """Each window equals the same stretch of a whole-file decode. Low-bitrate MP3 is the hard case:
    libsndfile's decoding glitches for up to ~0.1 s after a seek, which the pre-roll margin absorbs."""
    path = tmp_path / f"noise{suffix}"
    noise = ["-f", "lavfi", "-i", "anoisesrc=r=48000:d=40:a=0.3"]
    subprocess.run(["ffmpeg", "-v", "error", *noise, "-c:a", *codec, str(path)], check=True)
    whole = sf.read(path, dtype="float32")[0]
    decoded = decode_windows(path)
    starts = window_starts(len(whole), WINDOW, 6)
    assert len(decoded.windows) == len(starts) == 4
    for window, start in zip(decoded.windows, starts, strict=True):
        assert np.abs(window - whole[start : start + WINDOW]).max() < 1e-6


def test_rate_window_length_and_count_are_parameters(tmp_path: Path) -> None:
    path = tmp_path / "ramp.wav"
    sf.write(path, ramp(25, 48000), 48000, subtype="FLOAT")
    decoded = decode_windows(path, sample_rate=16000, window_seconds=5, max_windows=2)
    assert [len(w) for w in decoded.windows] == [80000, 80000]
    starts = [float(w[1000]) * 2**21 / 3 - 1000 for w in decoded.windows]  # 48 kHz sample n is 16 kHz sample n/3
    assert starts == pytest.approx([60000, 260000], abs=1)  # centres of 0-12.5 s and 12.5-25 s, minus 2.5 s


@pytest.mark.parametrize(
    ("total", "window", "max_windows", "expected"),
    [
        (25, 10, 6, [0, 7, 15]),  # 25 s → 3 windows (7.5 s floors to 7 at 1 sample/s)
        (250, 100, 6, [0, 75, 150]),
        (240, 10, 6, [15, 55, 95, 135, 175, 215]),  # 4 minutes → 6 windows, centred on 20, 60, ... 220 s
        (20, 10, 6, [0, 10]),
        (10, 10, 6, [0]),  # exactly one window
        (4, 10, 6, [0]),  # shorter than a window: the whole file
        (305, 100, 1, [102]),  # one window: the middle
    ],
)
def test_window_starts(total: int, window: int, max_windows: int, expected: list[int]) -> None:
    assert window_starts(total, window, max_windows) == expected


def test_four_minute_file_gives_six_windows(tmp_path: Path) -> None:
    decoded = decode_windows(write_tone(tmp_path / "long.flac", 240, 440, sample_rate=8000))
    assert decoded.duration == pytest.approx(240.0)
    assert [len(w) for w in decoded.windows] == [WINDOW] * 6


@pytest.mark.parametrize(("seconds", "suffix"), [(0.5, ".wav"), (0.5, ".m4a"), (4.0, ".flac")])
def test_short_file_gives_one_window_holding_all_of_it(tmp_path: Path, seconds: float, suffix: str) -> None:
    decoded = decode_windows(write_tone(tmp_path / f"short{suffix}", seconds, 440))
    assert decoded.duration == pytest.approx(seconds, abs=0.05)
    assert len(decoded.windows) == 1
    assert len(decoded.windows[0]) == round(decoded.duration * RATE)
    assert not decoded.silent


@pytest.mark.parametrize("suffix", [".flac", ".mp3"])
def test_silence_is_flagged(tmp_path: Path, suffix: str) -> None:
    decoded = decode_windows(write_tone(tmp_path / f"silence{suffix}", 12, freq=0))
    assert decoded.silent
    assert [len(w) for w in decoded.windows] == [WINDOW, WINDOW]


@pytest.mark.parametrize(
    ("name", "source", "damage", "reason"),
    [
        ("garbage.flac", ".flac", "garbage", "corrupt"),  # a valid header, then noise
        ("truncated.flac", ".flac", "truncate", "corrupt"),
        ("garbage.ogg", ".ogg", "garbage", "corrupt"),
        ("truncated.mp3", ".mp3", "truncate", "truncated or corrupt"),  # its header still claims 25 s
        ("truncated.m4a", ".m4a", "truncate", "corrupt"),  # the index (moov atom) at the end is gone
        ("text.mp3", None, "text", "not audio that ffmpeg reads"),
        ("empty.mp3", None, "empty", "the file is empty"),
    ],
)
def test_undecodable_files_raise_a_clear_error(
    tones: dict[str, Path], tmp_path: Path, name: str, source: str | None, damage: str, reason: str
) -> None:
    real = tones[source].read_bytes() if source else b""
    if damage == "garbage":
        data = real[:4000] + np.random.default_rng(0).bytes(len(real) - 4000)
    elif damage == "truncate":
        data = real[: len(real) // 3]
    else:
        data = b"not music, just a text file with the wrong name\n" * 50 if damage == "text" else b""
    path = tmp_path / name
    path.write_bytes(data)
    with pytest.raises(AudioDecodeError) as caught:
        decode_windows(path)
    assert str(path) in str(caught.value)
    assert reason in str(caught.value)


def test_missing_file_and_folder(tmp_path: Path) -> None:
    with pytest.raises(AudioDecodeError, match="no such file"):
        decode_windows(tmp_path / "gone.mp3")
    with pytest.raises(AudioDecodeError, match="not a file"):
        decode_windows(tmp_path)


def test_file_without_audio_stream(tmp_path: Path) -> None:
    path = tmp_path / "video.mp4"
    subprocess.run(
        ["ffmpeg", "-v", "error", "-f", "lavfi", "-i", "color=c=red:s=32x32:d=1", "-c:v", "mpeg4", str(path)],
        check=True,
    )
    with pytest.raises(AudioDecodeError, match="no audio stream"):
        decode_windows(path)


def test_missing_ffmpeg_says_how_to_install_it(
    tones: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))  # an empty folder: no ffmpeg, no ffprobe
    with pytest.raises(AudioDecodeError, match=r"install ffmpeg: bash scripts/setup\.sh") as caught:
        decode_windows(tones[".m4a"])
    assert str(tones[".m4a"]) in str(caught.value)
    assert decode_windows(tones[".flac"]).windows  # libsndfile formats need no ffmpeg


_MEASURE = """
import resource, sys, tracemalloc
from pathlib import Path
from image2mood.audio import decode_windows
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
tracemalloc.start()
decoded = decode_windows(Path(sys.argv[1]))
traced_mb = tracemalloc.get_traced_memory()[1] / 2**20
rss_mb = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
print(len(decoded.windows), decoded.duration, traced_mb, rss_mb)
"""


@pytest.mark.parametrize("suffix", [".wav", ".mka"])  # libsndfile and ffmpeg backends
def test_two_hour_file_decodes_in_bounded_memory(tmp_path: Path, suffix: str) -> None:
    """Whole, this file takes 115 MB as float32 (1.4 GB at 48 kHz); its six windows take 11 MB."""
    path = write_tone(tmp_path / f"two-hours{suffix}", 7200, 100, sample_rate=4000)
    done = subprocess.run([sys.executable, "-c", _MEASURE, str(path)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    count, duration, traced_mb, rss_mb = done.stdout.split()
    assert int(count) == 6
    assert float(duration) == pytest.approx(7200, abs=0.1)
    assert float(traced_mb) < 30, traced_mb  # peak of Python/numpy allocations while decoding
    assert float(rss_mb) < 60, rss_mb  # growth of the process's peak resident memory, native code included


def test_content_hash(tmp_path: Path) -> None:
    data = np.random.default_rng(1).bytes(3_000_000)
    original, copy, changed = tmp_path / "a.mp3", tmp_path / "b.mp3", tmp_path / "c.mp3"
    original.write_bytes(data)
    copy.write_bytes(data)
    changed.write_bytes(data[:-1] + bytes([data[-1] ^ 1]))
    assert content_hash(original) == hashlib.sha256(data).hexdigest()
    assert content_hash(copy) == content_hash(original)
    assert content_hash(changed) != content_hash(original)


def test_iter_audio_files_walks_sorted_skips_hidden_and_dedupes(tmp_path: Path) -> None:
    lib = tmp_path / "lib"
    for name in ["b.mp3", "A.FLAC", "notes.txt", ".hidden.mp3", ".cache/x.mp3", "sub/c.ogg", "sub/deep/d.M4A",
                 "a_dir/e.wav", "cover.jpg"]:  # fmt: skip
        (lib / name).parent.mkdir(parents=True, exist_ok=True)
        (lib / name).write_bytes(b"x")
    (lib / "sub" / "loop").symlink_to(lib)  # a symlink cycle must not loop forever
    explicit = tmp_path / "misnamed.txt"
    explicit.write_bytes(b"x")
    found = list(iter_audio_files([lib, explicit, lib / "b.mp3", tmp_path / "missing.mp3"]))
    assert found == [
        lib / "A.FLAC",
        lib / "b.mp3",
        lib / "a_dir" / "e.wav",
        lib / "sub" / "c.ogg",
        lib / "sub" / "deep" / "d.M4A",
        explicit,  # given explicitly: yielded whatever its suffix, so decoding can say what is wrong
        tmp_path / "missing.mp3",
    ]
    assert {".mp3", ".flac", ".ogg", ".opus", ".wav", ".m4a"} <= SUPPORTED_SUFFIXES


@pytest.mark.parametrize("suffix", TAGGED)
def test_read_tags(tones: dict[str, Path], suffix: str) -> None:
    assert read_tags(tones[suffix]) == Tags(
        title="Blue in Green", artist="Miles Davis", album="Kind of Blue", genre="Jazz"
    )


def test_read_tags_falls_back_to_the_file_name(tones: dict[str, Path], tmp_path: Path) -> None:
    untagged = write_tone(tmp_path / "Track 01.flac", 1, 440)
    blank = write_tone(tmp_path / "blank.mp3", 1, 440, tags={"title": "   ", "artist": "Someone"})
    text = tmp_path / "Not Audio.mp3"
    text.write_text("hello")
    assert read_tags(untagged) == Tags(title="Track 01", artist=None, album=None, genre=None)
    assert read_tags(blank) == Tags(title="blank", artist="Someone", album=None, genre=None)
    assert read_tags(text) == Tags(title="Not Audio", artist=None, album=None, genre=None)
    assert read_tags(tmp_path / "missing.ogg").title == "missing"


def test_an_opus_file_libsndfile_cannot_read_is_read_by_ffmpeg(tmp_path: Path, monkeypatch) -> None:
    """Seen with a real ffmpeg-encoded Opus song that libsndfile calls malformed after a seek; no
    synthetic file reproduces it, so libsndfile's failure is simulated. Other formats do not retry."""
    path = write_tone(tmp_path / "song.opus", seconds=25, freq=880)
    flac = write_tone(tmp_path / "song.flac", seconds=25, freq=880)

    def refuse(self, ranges):
        raise AudioDecodeError(f"cannot decode {self.path}: the audio data is corrupt (simulated)")

    monkeypatch.setattr(decoders_module.SoundFileSource, "read", refuse)
    decoded = decode_windows(path)
    assert decoded.duration == pytest.approx(25.0, abs=0.1) and len(decoded.windows) == 3
    for window in decoded.windows:
        assert window.shape == (WINDOW,)
        assert np.argmax(np.abs(np.fft.rfft(window))) * RATE / WINDOW == pytest.approx(880, abs=1.0)
    with pytest.raises(AudioDecodeError, match="simulated"):
        decode_windows(flac)



@pytest.mark.timeout(60)
def test_only_regular_files_are_opened(tmp_path: Path) -> None:
    """A named pipe is refused without being opened (opening one waits for a writer forever)."""
    pipe = tmp_path / "pipe.mp3"
    os.mkfifo(pipe)
    (tmp_path / "loop.flac").symlink_to(tmp_path / "loop.flac")
    (tmp_path / "dangling.ogg").symlink_to(tmp_path / "nowhere.ogg")
    (tmp_path / "folder.mp3").mkdir()
    for name, reason in [("pipe.mp3", "a named pipe (FIFO), not a file"), ("loop.flac", "a symlink loop"),
                         ("dangling.ogg", "a symlink that points nowhere"), ("folder.mp3", "a folder, not a file")]:
        for read in (decode_windows, content_hash):
            with pytest.raises(AudioDecodeError, match=re.escape(f"{tmp_path / name}: {reason}")):
                read(tmp_path / name)
    assert list(iter_audio_files([tmp_path])) == [tmp_path / "dangling.ogg", tmp_path / "loop.flac", pipe]


@pytest.mark.parametrize("suffix", [".flac", ".mp3", ".m4a"])
def test_a_name_that_is_not_utf8_decodes(tmp_path: Path, suffix: str) -> None:
    path = Path(os.fsdecode(os.fsencode(tmp_path) + b"/caf\xe9" + suffix.encode()))
    os.rename(write_tone(tmp_path / f"tone{suffix}", 3, 440), path)
    decoded = decode_windows(path)
    assert decoded.duration == pytest.approx(3.0, abs=0.1) and not decoded.silent


def test_decoder_notes_come_back_with_the_file_not_on_stderr(
        tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    damaged = write_damaged_mp3(tmp_path / "damaged.mp3")
    with pytest.raises(AudioDecodeError) as caught:
        decode_windows(damaged)
    message = str(caught.value)
    assert message.startswith(f"cannot decode {damaged}: ")
    assert message.count("Note: Illegal Audio-MPEG-Header") == 1 and message.count("Trying to resync") == 1
    assert "Illegal Audio-MPEG-Header" not in capfd.readouterr().err


@pytest.mark.parametrize("channels", [1, 2, 6])
def test_downmix_is_the_channels_mean_bit_for_bit(channels: int) -> None:
    from image2mood.decoders import _downmix

    block = np.random.default_rng(channels).standard_normal((4801, channels)).astype(np.float32)
    mono = _downmix(block)
    assert mono.dtype == np.float32 and mono.shape == (4801,)
    assert np.array_equal(mono, block.mean(axis=1, dtype=np.float32))
