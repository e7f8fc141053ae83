"""img2dataset's output as DATA: the `files` and `webdataset` layouts read as the equivalent table (same
pairs, same split, in any shard order), broken members counted, both trainers on them, and shards streamed
with flat memory."""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import run_cli
from media_shards import sample_rows, write_equivalent_table, write_img2dataset
from training.data import TarMember, load_image, read_pairs, split
from training.shards import samples

LAYOUTS = ("files", "webdataset")
RSS_BOUND_MB = 8  # streaming 180 more shards (about 36 MB of images) may grow the reader by less than this


@pytest.fixture(scope="module")
def sets(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The same 12 samples (2 shards of 6, the last of each a truncated JPEG) in both layouts and as a table."""
    root = tmp_path_factory.mktemp("img2dataset")
    rows = sample_rows(shards=2, per_shard=6)
    found = {layout: write_img2dataset(root / layout, rows, layout) for layout in LAYOUTS}
    found["table"] = write_equivalent_table(root / "table", rows)
    return found


def _read(sets: dict[str, Path], name: str, **options):
    return read_pairs(sets[name], images=sets["table"].parent / "images" if name == "table" else None, **options)


def _bytes(pair) -> bytes:
    return pair.image.read() if isinstance(pair.image, TarMember) else Path(pair.image).read_bytes()


@pytest.mark.parametrize("layout", LAYOUTS)
def test_a_layout_reads_as_the_equivalent_table(sets: dict[str, Path], layout: str) -> None:
    table, shards = _read(sets, "table"), _read(sets, layout)
    assert [(p.key, p.caption) for p in shards.pairs] == [(p.key, p.caption) for p in table.pairs]
    assert [_bytes(p) for p in shards.pairs] == [_bytes(p) for p in table.pairs]
    assert isinstance(shards.pairs[0].image, TarMember if layout == "webdataset" else Path)
    assert [[p.key for p in side] for side in split(shards.pairs, 4)] == \
        [[p.key for p in side] for side in split(table.pairs, 4)]
    loaded = [shards.image(p) for p in shards.pairs]
    assert sum(image is None for image in loaded) == 2 and sorted(shards.broken) == [5, 11]
    assert np.array_equal(np.asarray(loaded[0]), np.asarray(load_image(table.pairs[0])))
    report = shards.report()
    assert f"img2dataset {layout}, 2 shards, 12 of 14 urls fetched" in report and "2 broken images skipped" in report
    assert "truncated or corrupt" in report and ("00001.tar/000010005.jpg" in report or "00001/000010005.jpg" in report)
    korean = _read(sets, layout, caption_language="kor_Hang")
    assert [p.caption for p in korean.pairs] == [p.caption for p in _read(sets, "table", caption_language="kor_Hang").pairs]


def test_the_split_stays_by_key_whatever_the_shard_order(sets: dict[str, Path], tmp_path: Path) -> None:
    reordered = tmp_path / "reordered"
    reordered.mkdir()
    for name, new in (("00000", "00001"), ("00001", "00000")):  # the shards swap names, so they stream swapped
        for suffix in (".tar", ".parquet"):
            (reordered / f"{new}{suffix}").write_bytes((sets["webdataset"] / f"{name}{suffix}").read_bytes())
    before, after = read_pairs(sets["webdataset"]), read_pairs(reordered)
    assert [p.key for p in after.pairs][:6] == [p.key for p in before.pairs][6:]
    for seed in (0, 1, 2):
        assert [{p.key for p in side} for side in split(after.pairs, seed)] == \
            [{p.key for p in side} for side in split(before.pairs, seed)]
    train, valid = split(before.pairs, 0)
    assert (len(train), len(valid)) == (10, 2)


def test_broken_text_members_and_a_cut_short_shard_are_counted_and_skipped(sets: dict[str, Path], tmp_path: Path) -> None:
    folder = tmp_path / "damaged"
    folder.mkdir()
    data = (sets["webdataset"] / "00000.tar").read_bytes()
    (folder / "00001.tar").write_bytes(data[: len(data) // 2])  # a download cut short
    with tarfile.open(folder / "00000.tar", "w") as tar:
        for name, payload in (("a.jpg", _jpeg()), ("a.json", b"{not json"), ("b.jpg", _jpeg()), ("b.txt", b"a fine one"),
                              ("c.jpg", _jpeg()), ("c.json", json.dumps({"url": "x"}).encode()), ("d.txt", b"no image")):
            info = tarfile.TarInfo(name)
            info.size = len(payload)
            tar.addfile(info, io.BytesIO(payload))
    dataset = read_pairs(folder)
    assert [p.key for p in dataset.pairs][:1] == ["b"]
    assert dataset.skipped[0] == "broken .json" and dataset.skipped[2] == "no caption" and dataset.skipped[3] == "no image"
    assert any("cut-short or unreadable shard (00001.tar" in why for why in dataset.skipped.values())


def _jpeg(size: int = 16, quality: int = 75) -> bytes:
    buffer = io.BytesIO()
    noise = np.random.default_rng(size).integers(0, 256, (size, size, 3), dtype=np.uint8)
    Image.fromarray(noise).save(buffer, "JPEG", quality=quality)
    return buffer.getvalue()


@pytest.mark.parametrize("layout", LAYOUTS)
def test_both_trainers_train_on_a_layout(sets: dict[str, Path], layout: str, cli_env: dict[str, str],
                                         tmp_path: Path) -> None:
    env = {**cli_env, "IMAGE2MOOD_THREADS": "1"}
    head = run_cli(["train", "projection", str(sets[layout]), "--out", str(tmp_path / "head.pt"), "--epochs", "2",
                    "--batch-size", "4", "--hidden", "0"], env, tmp_path)
    assert head.returncode == 0, head.stderr
    assert f"(img2dataset {layout}, 2 shards, 12 of 14 urls fetched): 12 pairs" in head.stderr
    assert "2 broken images skipped" in head.stderr and (tmp_path / "head.pt").is_file()
    cached = np.load(tmp_path / "head-features" / "clip-image.npz")
    assert len(cached["keys"]) == 10
    blip = run_cli(["train", "blip", str(sets[layout]), "--out", str(tmp_path / "blip"), "--max-steps", "2",
                    "--batch-size", "4", "--image-size", "model"], env, tmp_path)
    assert blip.returncode == 0, blip.stderr
    assert "training on 10 pairs, validating on 2" in blip.stderr and f"wrote {tmp_path / 'blip'} at step 2" in blip.stdout


def _rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS in /proc/self/status")


def test_streaming_200_shards_keeps_the_reader_flat(tmp_path: Path) -> None:
    image = _jpeg(160, quality=95)  # about 40 kB of noise
    for shard in range(200):
        with tarfile.open(tmp_path / f"{shard:05d}.tar", "w") as tar:
            for i in range(5):
                for ext, payload in (("jpg", image + bytes([shard % 256, i])), ("txt", f"caption {shard} {i}".encode())):
                    info = tarfile.TarInfo(f"{shard:05d}{i:04d}.{ext}")
                    info.size = len(payload)
                    tar.addfile(info, io.BytesIO(payload))
    seen, after_20 = 0, 0.0
    for sample in samples(tmp_path, "webdataset", with_bytes=True):
        assert isinstance(sample.image, bytes) and sample.record["caption"]
        seen += 1
        if seen == 100:  # 20 shards in: the reader, the decoder and the allocator are warm
            after_20 = _rss_mb()
    grown = _rss_mb() - after_20
    assert seen == 1000 and len(image) * 900 > 3 * RSS_BOUND_MB * 2**20
    assert grown < RSS_BOUND_MB, f"RSS grew {grown:.1f} MB over 180 shards"
