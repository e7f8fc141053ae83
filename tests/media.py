"""Test helpers that write audio files in the formats a music library holds.

WAV, FLAC, AIFF and Ogg Vorbis are written by soundfile; MP3, M4A/MP4, AAC, Opus, WMA, WavPack and
Matroska by Debian's ffmpeg (fed raw samples on stdin). Samples go out in chunks, so hour-long files
cost little memory. Tags are written by the encoder (libsndfile's string fields or ``ffmpeg -metadata``),
not by mutagen, so reading them back tests the tag reader against files it did not write.
"""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np
import soundfile as sf

SOUNDFILE_FORMATS = {".wav": "WAV", ".flac": "FLAC", ".aiff": "AIFF", ".ogg": "OGG"}
FFMPEG_CODECS = {
    ".mp3": ["-c:a", "libmp3lame", "-b:a", "128k"],
    ".m4a": ["-c:a", "aac", "-b:a", "128k"],
    ".mp4": ["-c:a", "aac", "-b:a", "128k"],
    ".aac": ["-c:a", "aac", "-b:a", "128k"],
    ".opus": ["-c:a", "libopus", "-b:a", "96k"],
    ".wma": ["-c:a", "wmav2", "-b:a", "128k"],
    ".wv": ["-c:a", "wavpack"],
    ".mka": ["-c:a", "copy"],  # the float samples as they are, in a container only ffmpeg reads
}
TAG_KEYS = ("title", "artist", "album", "genre")
_CHUNK_SAMPLES = 1 << 20


def write_audio(
    path: Path,
    chunks: Iterable[np.ndarray],
    sample_rate: int,
    *,
    channels: int = 1,
    tags: dict[str, str] | None = None,
) -> Path:
    """Write float samples (chunks of shape (n,) or (n, channels)) to ``path``; the suffix picks the format."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix in SOUNDFILE_FORMATS:
        with sf.SoundFile(path, "w", sample_rate, channels, format=SOUNDFILE_FORMATS[suffix]) as f:
            for key, value in (tags or {}).items():
                setattr(f, _checked(key), value)
            for chunk in chunks:
                f.write(chunk)
        return path
    if suffix not in FFMPEG_CODECS:
        raise ValueError(f"no writer for {suffix!r}")
    ffmpeg = shutil.which("ffmpeg")
    assert ffmpeg, "ffmpeg is needed to write " + suffix
    metadata = [arg for key, value in (tags or {}).items() for arg in ("-metadata", f"{_checked(key)}={value}")]
    command = [ffmpeg, "-v", "error", "-y", "-f", "f32le", "-ar", str(sample_rate), "-ac", str(channels)]
    command += ["-i", "pipe:0", *FFMPEG_CODECS[suffix], *metadata, str(path)]
    with tempfile.TemporaryFile() as errors:
        proc = subprocess.Popen(command, stdin=subprocess.PIPE, stderr=errors)
        assert proc.stdin is not None
        with contextlib.suppress(BrokenPipeError), proc.stdin:  # if ffmpeg stops early, its message says why
            for chunk in chunks:
                proc.stdin.write(np.ascontiguousarray(chunk, dtype="<f4").tobytes())
        if proc.wait(timeout=120) != 0:
            errors.seek(0)
            raise RuntimeError(f"ffmpeg could not write {path}: {errors.read().decode(errors='replace')}")
    return path


def write_tone(
    path: Path,
    seconds: float,
    freq: float = 440.0,
    *,
    sample_rate: int = 44100,
    channels: int = 1,
    amplitude: float = 0.5,
    tags: dict[str, str] | None = None,
) -> Path:
    """Write a sine tone (``freq=0`` gives digital silence) of ``seconds`` to ``path``, in chunks."""
    total = round(seconds * sample_rate)
    return write_audio(
        path, _tone_chunks(total, freq, sample_rate, channels, amplitude), sample_rate, channels=channels, tags=tags
    )


def _tone_chunks(total: int, freq: float, sample_rate: int, channels: int, amplitude: float) -> Iterator[np.ndarray]:
    for first in range(0, total, _CHUNK_SAMPLES):
        t = np.arange(first, min(first + _CHUNK_SAMPLES, total)) / sample_rate
        tone = (amplitude * np.sin(2 * np.pi * freq * t)).astype(np.float32)
        yield np.repeat(tone[:, None], channels, axis=1)


def _checked(key: str) -> str:
    if key not in TAG_KEYS:
        raise ValueError(f"tag {key!r} is not one of {TAG_KEYS}")
    return key


def write_damaged_mp3(path: Path, seconds: float = 30.0) -> Path:
    """A real MP3 tone with 400 bytes of its middle overwritten: mpg123 meets an illegal frame header there."""
    write_tone(path, seconds, 440)
    data = bytearray(path.read_bytes())
    middle = len(data) // 2
    data[middle : middle + 400] = bytes(i % 251 for i in range(400))
    path.write_bytes(bytes(data))
    return path
