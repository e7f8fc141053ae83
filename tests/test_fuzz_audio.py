"""Fuzzing the indexer's front door: over a hundred damaged, lying or hostile audio files in one run.

Every file is either indexed (it really holds audio) or a reported skip that names it; the run ends,
the process lives, and the store holds exactly the songs that were indexed, the good ones among them.
"""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from image2mood.config import Settings
from image2mood.library import store_info
from image2mood.models.factory import clap_encoder
from image2mood.store import open_store
from indexer.pipeline import Indexer
from media import write_tone

SUFFIXES = [".mp3", ".flac", ".wav", ".ogg", ".opus", ".m4a", ".aiff", ".wma", ".mka", ".wv"]


def wav_header(*, channels: int = 1, rate: int = 44100, bits: int = 16, frames: int | None = None,
               data_bytes: int | None = None, fmt_tag: int = 1, block_align: int | None = None) -> bytes:
    """A RIFF/WAVE header whose fields may lie about what follows."""
    align = channels * bits // 8 if block_align is None else block_align
    size = data_bytes if data_bytes is not None else (frames or 0) * max(align, 1)
    fmt = struct.pack("<HHIIHH", fmt_tag, channels, rate, (rate * align) & 0xFFFFFFFF, align & 0xFFFF, bits)
    return (b"RIFF" + struct.pack("<I", min(36 + size, 0xFFFFFFFF)) + b"WAVE" + b"fmt " + struct.pack("<I", 16)
            + fmt + b"data" + struct.pack("<I", min(size, 0xFFFFFFFF)))


def id3_header(size: int) -> bytes:
    """An ID3v2.4 tag header claiming ``size`` bytes of tag (syncsafe, at most 256 MB)."""
    syncsafe = bytes((size >> shift) & 0x7F for shift in (21, 14, 7, 0))
    return b"ID3\x04\x00\x00" + syncsafe


def make_files(folder: Path) -> tuple[list[Path], list[Path], list[Path]]:
    """(good songs, files that cannot be audio, files whose fate depends on the decoders)."""
    rng = np.random.default_rng(11)
    good = [write_tone(folder / f"good{i}{s}", 3 + i, 220 * (i + 1)) for i, s in
            enumerate([".flac", ".wav", ".ogg", ".mp3", ".m4a"])]
    hopeless: list[Path] = []
    unsure: list[Path] = []

    def put(name: str, data: bytes, into: list[Path]) -> None:
        path = folder / name
        path.write_bytes(data)
        into.append(path)

    for source in good[:4]:  # truncated at many offsets, from inside the header to the last byte
        data = source.read_bytes()
        cuts = sorted({1, 3, 4, 8, 12, 24, 36, 44, 64, 100, 200, 500, 1000, 2000, 4000,
                       len(data) // 4, len(data) // 2, 3 * len(data) // 4, len(data) - 1})
        for cut in cuts:
            put(f"cut{cut}-{source.stem}{source.suffix}", data[:cut], hopeless if cut <= 4 else unsure)
        put(f"noisy-{source.stem}{source.suffix}", data[:300] + rng.bytes(20000), unsure)  # a header, then noise
    for i, suffix in enumerate(SUFFIXES * 2):  # random bytes of random sizes
        put(f"random{i}{suffix}", rng.bytes(int(rng.integers(1, 30000))), unsure)
    for suffix in SUFFIXES:
        put(f"empty{suffix}", b"", hopeless)
    for suffix in (".mp3", ".flac", ".ogg"):
        put(f"text{suffix}", b"Just a text file that someone named like a song.\n" * 40, hopeless)
    pcm = (0.3 * np.sin(np.arange(44100) / 5)).astype("<i2").tobytes()
    lies = {
        "frames-2e31": wav_header(frames=2**31) + pcm,  # claims 13 hours, holds 0.5 s
        "rate-0": wav_header(rate=0, frames=22050) + pcm,
        "rate-4e9": wav_header(rate=0xFFFFFFFF, frames=22050) + pcm,
        "rate-2e9": wav_header(rate=2**31 - 1, frames=22050) + pcm,
        "channels-65535": wav_header(channels=65535, data_bytes=len(pcm)) + pcm,
        "channels-0": wav_header(channels=0, data_bytes=len(pcm)) + pcm,
        "bits-0": wav_header(bits=0, frames=22050) + pcm,
        "bits-7": wav_header(bits=7, frames=22050) + pcm,
        "align-0": wav_header(block_align=0, frames=22050) + pcm,
        "format-0x1234": wav_header(fmt_tag=0x1234, frames=22050) + pcm,
        "float-nan": wav_header(fmt_tag=3, bits=32, frames=1000) + np.full(1000, np.nan, "<f4").tobytes(),
        "float-inf": wav_header(fmt_tag=3, bits=32, frames=1000) + np.full(1000, np.inf, "<f4").tobytes(),
        "no-data": wav_header(frames=0),
        "riff-only": b"RIFF\xff\xff\xff\xffWAVE",
    }
    for name, data in lies.items():
        put(f"lie-{name}.wav", data, unsure)
    mp3 = good[3].read_bytes()
    put("id3-256mb.mp3", id3_header(0x0FFFFFFF) + mp3, unsure)  # a tag claiming 256 MB, then a song
    put("id3-only.mp3", id3_header(0x0FFFFFFF) + b"\x00" * 5000, unsure)
    put("id3-2mb.mp3", id3_header(2_000_000) + b"\x00" * 2_000_000 + mp3, unsure)  # a real 2 MB tag
    put("flac-rate-max.flac", good[0].read_bytes()[:18] + b"\xff\xff\xf0" + good[0].read_bytes()[21:], unsure)
    for suffix in (".wav", ".flac"):  # one sample; digital silence: real audio, indexed
        path = folder / f"one-sample{suffix}"
        sf.write(path, np.array([0.25], np.float32), 44100)
        unsure.append(path)
        unsure.append(write_tone(folder / f"silent{suffix}", 4, freq=0))
    return good, hopeless, unsure


@pytest.mark.timeout(600)
def test_a_hundred_bad_files_are_skips_and_the_store_holds_exactly_what_was_indexed(
        tmp_path: Path, settings: Settings) -> None:
    folder = tmp_path / "fuzz"
    folder.mkdir()
    good, hopeless, unsure = make_files(folder)
    assert len(hopeless) + len(unsure) >= 100
    settings = settings.model_copy(update={"windows_per_song": 1})
    encoder, lines = clap_encoder(settings), []
    with open_store(settings.store, info=store_info(encoder, settings)) as store:
        report = Indexer(store, encoder, settings, warn=lines.append).run([folder])
        songs = list(store.scroll())

    everything = {p.resolve() for p in good + hopeless + unsure}
    failed = {path.resolve() for path, _ in report.failures}
    stored = {Path(song.path) for song in songs}
    assert len(songs) == len(stored) == report.indexed  # each song once
    assert stored | failed == everything and not stored & failed
    assert {p.resolve() for p in good} <= stored
    assert {p.resolve() for p in hopeless} <= failed
    for path, reason in report.failures:
        assert str(path) in reason, reason
        assert f"failed: {reason}" in lines
    assert {song.id for song in songs} == {song.id for song in songs if Path(song.path) in everything}
