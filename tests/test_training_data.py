"""The trainers' table reader: formats, the LAION-COCO-NLLB shape, the split, broken rows, clear errors."""

from __future__ import annotations

import io
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from media_captions import KOREAN, captioned_image, write_captioned_images, write_table
from media_images import truncated_jpeg
from training.data import DataError, read_pairs, split


@pytest.mark.parametrize("suffix", [".csv", ".jsonl", ".parquet"])
def test_each_format_reads_paths_under_the_images_root(tmp_path: Path, suffix: str) -> None:
    rows = write_captioned_images(tmp_path / "img", per_category=1)
    dataset = read_pairs(write_table(tmp_path / f"t{suffix}", rows), images=tmp_path / "img")
    assert [p.caption for p in dataset.pairs] == [r["caption"] for r in rows]
    assert dataset.pairs[0].image == tmp_path / "img" / rows[0]["image"]
    assert dataset.image(dataset.pairs[0]).size == (96, 96) and not dataset.broken


def test_parquet_image_bytes_and_a_chosen_caption_column(tmp_path: Path) -> None:
    buffer = io.BytesIO()
    captioned_image(0, seed=1).save(buffer, "PNG")
    rows = [{"jpg": buffer.getvalue(), "text": "a red sunset", "caption": "unused"}]
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "bytes.parquet")
    dataset = read_pairs(tmp_path / "bytes.parquet", image_column="jpg", caption_column="text")
    assert dataset.pairs[0].caption == "a red sunset" and isinstance(dataset.pairs[0].image, bytes)
    assert dataset.pairs[0].image_key.startswith("sha1:")
    assert dataset.image(dataset.pairs[0]).size == (96, 96)
    # the Image feature of Hugging Face datasets: a struct of bytes and path
    pq.write_table(pa.Table.from_pylist([{"image": {"bytes": buffer.getvalue(), "path": "p.png"}, "caption": "c"}]),
                   tmp_path / "hf.parquet")
    assert read_pairs(tmp_path / "hf.parquet").pairs[0].image == buffer.getvalue()


def test_laion_coco_nllb_parquet_reads_as_it_comes(tmp_path: Path) -> None:
    """The dataset card's schema: id, url, eng_caption, captions (list of [language code, caption]), score;
    images fetched by id into a folder (img2dataset's naming)."""
    images = tmp_path / "images"
    images.mkdir()
    rows = []
    for i in range(4):
        captioned_image(i, seed=i).save(images / f"{1000 + i}.jpg")
        translations = [["fra_Latn", f"légende {i}"], ["deu_Latn", f"Bildunterschrift {i}"]]
        if i != 3:  # the last row has no Korean translation
            translations.insert(1, ["kor_Hang", KOREAN[i]])
        rows.append({"id": str(1000 + i), "url": f"https://example.org/{i}.jpg", "eng_caption": f"caption {i}",
                     "captions": translations, "score": 0.5 + i / 10})
    schema = pa.schema([("id", pa.string()), ("url", pa.string()), ("eng_caption", pa.string()),
                        ("captions", pa.list_(pa.list_(pa.string()))), ("score", pa.float64())])
    (tmp_path / "data").mkdir()
    path = tmp_path / "data" / "train-00000-of-00002.parquet"  # the dataset comes in shards
    pq.write_table(pa.Table.from_pylist(rows[:3], schema=schema), path)
    pq.write_table(pa.Table.from_pylist(rows[3:], schema=schema), tmp_path / "data" / "train-00001-of-00002.parquet")
    assert [p.caption for p in read_pairs(path, images=images).pairs] == [f"caption {i}" for i in range(3)]
    path = tmp_path / "data"

    english = read_pairs(path, images=images)
    assert [p.caption for p in english.pairs] == [f"caption {i}" for i in range(4)]
    assert english.pairs[2].image == images / "1002.jpg" and english.image(english.pairs[2]) is not None

    korean = read_pairs(path, images=images, caption_language="kor_Hang")
    assert [p.caption for p in korean.pairs] == list(KOREAN[:3])
    assert korean.skipped == {3: "no caption"} and "1 rows skipped (1 no caption)" in korean.report()

    with pytest.raises(DataError, match="give --images"):
        read_pairs(path)


def test_split_is_8_to_2_and_the_same_for_the_same_seed(tmp_path: Path) -> None:
    rows = [{"image": f"{i}.png", "caption": f"caption {i}"} for i in range(50)]
    pairs = read_pairs(write_table(tmp_path / "t.jsonl", rows), images=tmp_path).pairs
    train, valid = split(pairs, seed=7)
    again = split(read_pairs(tmp_path / "t.jsonl", images=tmp_path).pairs, seed=7)
    assert (len(train), len(valid)) == (40, 10)
    assert ([p.row for p in train], [p.row for p in valid]) == ([p.row for p in again[0]], [p.row for p in again[1]])
    assert sorted(p.row for p in train + valid) == list(range(50))
    assert [p.row for p in split(pairs, seed=8)[1]] != [p.row for p in valid]


def test_broken_and_missing_images_are_skipped_and_counted(tmp_path: Path) -> None:
    rows = write_captioned_images(tmp_path, per_category=1)[:3]
    truncated_jpeg(tmp_path / "broken.jpg")
    (tmp_path / "empty.png").write_bytes(b"")
    rows += [{"image": "broken.jpg", "caption": "a truncated photo"}, {"image": "gone.png", "caption": "a lost one"},
             {"image": "empty.png", "caption": "an empty file"}, {"image": "", "caption": "no image at all"}]
    dataset = read_pairs(write_table(tmp_path / "t.csv", rows), images=tmp_path)
    loaded = [dataset.image(pair) for pair in dataset.pairs]
    assert sum(image is not None for image in loaded) == 3
    assert sorted(dataset.broken) == [3, 4, 5] and dataset.skipped == {6: "no image"}
    report = dataset.report()
    assert "6 pairs" in report and "1 rows skipped (1 no image)" in report and "3 broken images skipped" in report
    assert "broken.jpg" in report and "truncated or corrupt" in report


def test_korean_captions_read_unchanged(tmp_path: Path) -> None:
    rows = write_captioned_images(tmp_path, per_category=1, korean=True)
    dataset = read_pairs(write_table(tmp_path / "ko.csv", rows), images=tmp_path)
    assert [p.caption for p in dataset.pairs] == list(KOREAN)


def test_clear_errors_for_missing_columns_empty_tables_and_unknown_files(tmp_path: Path) -> None:
    table = write_table(tmp_path / "t.csv", [{"image": "a.png", "text": "a caption"}])
    with pytest.raises(DataError, match=r"has no column 'caption' \(its columns: image, text\); .*--caption-column"):
        read_pairs(table, images=tmp_path)
    with pytest.raises(DataError, match=r"no column 'photo'.*--image-column"):
        read_pairs(table, images=tmp_path, caption_column="text", image_column="photo")
    (tmp_path / "empty.csv").write_text("image,caption\n")
    with pytest.raises(DataError, match="empty.csv holds no rows"):
        read_pairs(tmp_path / "empty.csv", images=tmp_path)
    pq.write_table(pa.table({"image": pa.array([], pa.string()), "caption": pa.array([], pa.string())}),
                   tmp_path / "empty.parquet")
    with pytest.raises(DataError, match="holds no rows"):
        read_pairs(tmp_path / "empty.parquet", images=tmp_path)
    blank = write_table(tmp_path / "blank.jsonl", [{"image": "a.png", "caption": "  "}])
    with pytest.raises(DataError, match="none of its 1 rows has a usable caption"):
        read_pairs(blank, images=tmp_path)
    (tmp_path / "bad.jsonl").write_text('{"image": "a.png", "caption": "ok"}\nnot json\n')
    with pytest.raises(DataError, match="bad.jsonl line 2 is not JSON"):
        read_pairs(tmp_path / "bad.jsonl", images=tmp_path)
    (tmp_path / "t.xlsx").write_bytes(b"x")
    with pytest.raises(DataError, match="unknown table format '.xlsx'"):
        read_pairs(tmp_path / "t.xlsx")
    with pytest.raises(DataError, match="does not exist"):
        read_pairs(tmp_path / "nowhere.csv")
