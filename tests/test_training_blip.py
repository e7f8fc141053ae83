"""BLIP fine-tuning on the tiny model set: overfitting a few pairs, the saved folder as the captioner,
resuming from the saved step, and a Korean caption column with its tokenizer coverage."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

from conftest import run_cli
from image2mood.models.blip import Captioner
from image2mood.models.resolve import resolve_model
from media_captions import KOREAN, captioned_image, one_thread, write_captioned_images, write_table  # noqa: F401
from training.blip import BlipForConditionalGeneration, BlipProcessor, BlipTrainer, BlipTrainingConfig, ResumeError
from training.data import read_pairs, split
from training.metrics import MetricsLog

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def ten_pairs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Ten captioned photos: one of each of the 8 categories and 2 more (an 8:2 split keeps 8 for training)."""
    root = tmp_path_factory.mktemp("blip-data")
    rows = write_captioned_images(root / "images", per_category=2)
    return write_table(root / "pairs.csv", rows[::2] + rows[1:4:2])


def _env(cli_env: dict[str, str]) -> dict[str, str]:
    return {**cli_env, "IMAGE2MOOD_THREADS": "1"}


def test_blip_overfits_eight_pairs(ten_pairs: Path, tiny_models: Path, tmp_path: Path) -> None:
    dataset = read_pairs(ten_pairs, images=ten_pairs.parent / "images")
    train, valid = split(dataset.pairs, seed=0)
    assert len(train) == 8
    model = BlipForConditionalGeneration.from_pretrained(tiny_models / "blip")
    processor = BlipProcessor.from_pretrained(tiny_models / "blip")
    log = MetricsLog(tmp_path / "metrics.jsonl")
    trainer = BlipTrainer(model, processor, dataset, train, valid, tmp_path / "out",
                          BlipTrainingConfig(epochs=15, batch_size=2, lr=3e-3, samples=2), torch.device("cpu"), log,
                          progress=False)
    trainer.run()
    steps = [r for r in log.records() if "train_loss" in r]
    assert [r["step"] for r in steps] == list(range(1, 61))
    last_epoch = [r["train_loss"] for r in steps if r["epoch"] == 15]
    assert sum(last_epoch) / len(last_epoch) <= 0.5 * steps[0]["train_loss"], steps
    epochs = [r for r in log.records() if "valid_loss" in r]
    # Overfitting eight pairs may well raise the loss on the two held-out ones, so the check is that each epoch
    # measured the model as it then was (finite, and moving with it), not that it fell.
    assert [r["epoch"] for r in epochs] == list(range(1, 16))
    assert all(math.isfinite(r["valid_loss"]) for r in epochs) and len({r["valid_loss"] for r in epochs}) > 1
    assert epochs[-1]["samples"][0]["caption"] == valid[0].caption and epochs[-1]["samples"][0]["generated"]
    elsewhere = BlipTrainer(model, processor, dataset, train, valid, tmp_path / "elsewhere", trainer.config,
                            torch.device("cpu"), log, progress=False)
    with pytest.raises(ResumeError, match="elsewhere holds no training-state.pt; start without --resume"):
        elsewhere.resume()


def test_saved_folder_resumes_from_its_step_and_captions_for_recommend(
        ten_pairs: Path, tiny_models: Path, cli_env: dict[str, str], tmp_path: Path) -> None:
    out = tmp_path / "blip"
    args = ["train", "blip", str(ten_pairs), "--images", str(ten_pairs.parent / "images"), "--out", str(out),
            "--epochs", "5", "--batch-size", "4", "--lr", "3e-3", "--image-size", "96", "--save-every", "2"]
    first = run_cli([*args, "--max-steps", "4"], _env(cli_env), tmp_path)
    assert first.returncode == 0, first.stderr
    assert "tokenizer coverage of the caption column: 100.0%" in first.stderr
    assert f"wrote {out} at step 4" in first.stdout
    assert torch.load(out / "training-state.pt", weights_only=True)["step"] == 4

    resumed = run_cli([*args, "--max-steps", "6", "--resume"], _env(cli_env), tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    assert "resuming at step 4 of 6" in resumed.stderr and f"wrote {out} at step 6" in resumed.stdout
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records if "train_loss" in r] == [1, 2, 3, 4, 5, 6]  # not from zero again
    state = torch.load(out / "training-state.pt", weights_only=True)
    assert state["step"] == 6 and state["optimizer"]["state"]
    assert (out / "metrics.png").stat().st_size > 1000

    photo = tmp_path / "photo.png"
    captioned_image(1, seed=77).save(photo)
    env = {**_env(cli_env), "IMAGE2MOOD_BLIP_MODEL": str(out), "IMAGE2MOOD_STORE": str(tmp_path / "store")}
    result = run_cli(["recommend", str(photo), "--json"], env, tmp_path)
    assert result.returncode == 0, result.stderr
    captioner = Captioner(resolve_model("blip", str(out)))
    assert captioner.model.config.vision_config.image_size == 96
    assert json.loads(result.stdout)["caption"] == captioner.caption([captioned_image(1, seed=77)])[0]


def test_korean_translation_column_trains_with_its_coverage_reported(
        tiny_models: Path, cli_env: dict[str, str], tmp_path: Path) -> None:
    images = tmp_path / "images"
    images.mkdir()
    rows = []
    for i in range(8):
        captioned_image(i, seed=i).save(images / f"{i}.jpg")
        rows.append({"id": str(i), "url": f"https://example.org/{i}.jpg", "eng_caption": f"caption {i}",
                     "captions": [["kor_Hang", KOREAN[i]], ["jpn_Jpan", "キャプション"]], "score": 0.4})
    table = tmp_path / "nllb.parquet"
    pq.write_table(pa.Table.from_pylist(rows), table)
    out = tmp_path / "blip-ko"
    result = run_cli(["train", "blip", str(table), "--images", str(images), "--caption-language", "kor_Hang",
                      "--out", str(out), "--max-steps", "2", "--batch-size", "4", "--image-size", "model",
                      "--add-missing-tokens"], _env(cli_env), tmp_path)
    assert result.returncode == 0, result.stderr
    before, after = result.stderr.index("coverage of captions[kor_Hang]: 0.0%"), result.stderr.index("added ")
    assert before < after and "coverage of captions[kor_Hang]: 100.0%" in result.stderr[after:]
    captioner = Captioner(resolve_model("blip", str(out)))  # the resized vocabulary loads as the captioner
    tokenizer = captioner.processor.tokenizer
    ids = tokenizer(KOREAN[0], add_special_tokens=False)["input_ids"]
    assert tokenizer.unk_token_id not in ids and tokenizer.decode(ids) == KOREAN[0]
    assert captioner.model.config.text_config.vocab_size == len(tokenizer)


def test_low_coverage_offers_the_fix(tiny_models: Path) -> None:
    from training.blip import token_coverage

    tokenizer = BlipProcessor.from_pretrained(tiny_models / "blip").tokenizer
    coverage = token_coverage(tokenizer, ["a dog on the beach", "해변의 개"])
    assert coverage.unknown == 2 and coverage.fraction == pytest.approx(5 / 7)
    assert "71.4% of 7 tokens known (2 [UNK]); 2 words it cannot spell, e.g. 해변의, 개" in coverage.report("caption")
