"""Test helpers for the trainers: generated photos with captions that describe them, the tables
(CSV, JSONL, Parquet) that list them, and a fixture that keeps torch on one thread."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

# (colour, caption words): each category has its own colour and pattern, and a caption of its own.
CATEGORIES = (
    ((220, 40, 30), "a red sunset over the sea"),
    ((30, 60, 200), "a blue sky with clouds"),
    ((40, 170, 60), "a green forest in the rain"),
    ((240, 220, 40), "a yellow field of flowers"),
    ((20, 20, 20), "a dark street at night"),
    ((245, 245, 245), "a white snowy mountain"),
    ((150, 60, 170), "a purple party with lights"),
    ((120, 80, 40), "a brown dog on the road"),
)
# Eight more, for tests that need more distinct captions than CATEGORIES has (held-out recall).
MORE_CATEGORIES = (
    ((250, 140, 20), "an orange pumpkin patch in autumn"),
    ((250, 150, 190), "pink cherry blossoms in spring"),
    ((120, 120, 125), "a grey concrete city block"),
    ((40, 210, 210), "a turquoise lagoon on a beach"),
    ((90, 20, 40), "a dark red theatre curtain"),
    ((20, 90, 80), "a deep green pond under trees"),
    ((180, 200, 120), "a pale meadow of dry grass"),
    ((60, 30, 110), "an indigo evening over hills"),
)
KOREAN = ("바다 위의 붉은 노을", "구름 낀 파란 하늘", "비 오는 초록 숲", "노란 꽃밭",
          "밤의 어두운 거리", "하얀 눈 덮인 산", "보라색 조명의 파티", "길 위의 갈색 개")


@pytest.fixture
def one_thread():
    """Tiny models and heads run fastest on one torch thread, most of all on a busy 2-core machine
    (commands a test starts get ``IMAGE2MOOD_THREADS=1`` in their environment for the same reason)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def captioned_image(category: int, seed: int, size: int = 96) -> Image.Image:
    """A photo of ``category``: its colour in a pattern of its own, with noise that differs per ``seed``."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:size, 0:size]
    pattern = ((x // (6 + 3 * category)) + (y // (6 + 3 * (category % 3))) * (category % 2)) % 2
    colour = np.array((CATEGORIES + MORE_CATEGORIES)[category][0], dtype=np.float32)
    pixels = colour * (0.6 + 0.4 * pattern[..., None]) + rng.normal(0, 12, (size, size, 3))
    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))


def write_captioned_images(folder: Path, per_category: int = 5, korean: bool = False, more: bool = False,
                           first_seed: int = 0) -> list[dict[str, str]]:
    """Write ``per_category`` photos of each category (with ``more``, MORE_CATEGORIES' too) under ``folder``;
    returns rows {image, caption}. Photos of another ``first_seed`` are other photos of the same scenes."""
    folder.mkdir(parents=True, exist_ok=True)
    rows = []
    for category, (_, caption) in enumerate(CATEGORIES + (MORE_CATEGORIES if more else ())):
        for i in range(first_seed, first_seed + per_category):
            name = f"c{category}_{i}.png"
            captioned_image(category, seed=category * 100 + i).save(folder / name)
            rows.append({"image": name, "caption": KOREAN[category] if korean else caption})
    return rows


def write_table(path: Path, rows: list[dict]) -> Path:
    """Write ``rows`` as CSV, JSONL or Parquet, by the suffix of ``path``."""
    if path.suffix == ".csv":
        with path.open("w", newline="", encoding="utf-8") as fh:
            writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)
    elif path.suffix == ".jsonl":
        path.write_text("".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows), encoding="utf-8")
    else:
        import pyarrow as pa
        import pyarrow.parquet as pq

        pq.write_table(pa.Table.from_pylist(rows), path)
    return path
