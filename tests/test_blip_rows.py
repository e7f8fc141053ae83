"""Continuous batching of BLIP's captions: photos that join the rows under way at a later step get the tokens
they get alone, finished rows leave, and the captioner's rolling captions equal its one-shot ones."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from image2mood.models.blip import Captioner
from image2mood.models.blip_rows import Rows, greedy
from image2mood.models.resolve import ResolvedModel
from test_models import _boost_output_bias

TOKENS = 12


def _captioner(tiny_models: Path, precision: str) -> Captioner:
    folder = tiny_models / "blip"
    return Captioner(ResolvedModel("blip", str(folder), folder), max_new_tokens=TOKENS, precision=precision)


def _features(blip: Captioner) -> torch.Tensor:
    """Four photos' features far apart (the tiny decoder hardly looks at the photo otherwise)."""
    scale = torch.tensor([1.0, 30.0, 300.0, 3.0])[:, None, None]
    return torch.randn(4, 50, blip.model.config.vision_config.hidden_size,
                       generator=torch.Generator().manual_seed(0)) * scale


def _decode(decoder: torch.nn.Module, features: torch.Tensor,
            schedule: dict[int, list[int]]) -> tuple[dict[int, list[int]], dict[int, list[torch.Tensor]]]:
    """Each photo's tokens, and its last hidden state at each step (what the output head reads), with the photos
    of ``schedule[step]`` joining the rows before that step."""
    rows, tokens, states, photo_of = Rows(decoder, TOKENS), {}, {}, {}

    def record(_: torch.nn.Module, args: tuple[torch.Tensor], __: torch.Tensor) -> None:
        for key, row, done in zip(rows._keys, args[0][:, -1], rows._done, strict=True):
            if not done:
                states.setdefault(photo_of[key], []).append(row.clone())

    hook = decoder.cls.register_forward_hook(record)
    try:
        for step in range(3 * TOKENS):
            if step in schedule:
                photo_of.update(zip(rows.join(features[schedule[step]]), schedule[step], strict=True))
            elif step > max(schedule) and not rows.busy:
                break
            tokens.update({photo_of[key]: ids for key, ids in rows.step().items()})
    finally:
        hook.remove()
    return tokens, states


@pytest.mark.parametrize("precision", ["fp32", "auto"])  # auto: int8 weights, each row quantised on its own
def test_rows_joining_at_later_steps_decode_as_they_do_alone(tiny_models: Path, precision: str) -> None:
    blip = _captioner(tiny_models, precision)
    decoder, config = blip.model.text_decoder, blip.model.config.text_config
    features = _features(blip)
    _boost_output_bias(decoder.cls.predictions.decoder, config.sep_token_id, 0.18)  # rows end at different steps
    with torch.inference_mode():
        alone = [_decode(decoder, features[photo:photo + 1], {0: [0]}) for photo in range(len(features))]
        # photo 0 first, 1 and 2 together later, 3 once photo 0 has finished
        tokens, states = _decode(decoder, features, {0: [0], 2: [1, 2], 8: [3]})
    assert tokens == {photo: ids[0] for photo, (ids, _) in enumerate(alone)}
    for photo, (_, own) in enumerate(alone):  # the same hidden states, step by step
        want = own[0]
        assert len(states[photo]) == len(want)
        assert all(torch.allclose(got, one, atol=1e-5) for got, one in zip(states[photo], want, strict=True))
    lengths = {len(ids) for ids in tokens.values()}
    assert len(lengths) > 1 and max(lengths) == TOKENS + 1  # some end at [SEP], one at the cap
    assert tokens[0] == greedy(decoder, features[:1], TOKENS)[0].tolist()[:len(tokens[0])]


def test_finished_rows_leave_when_others_join(tiny_models: Path) -> None:
    blip = _captioner(tiny_models, "fp32")
    decoder, config = blip.model.text_decoder, blip.model.config.text_config
    _boost_output_bias(decoder.cls.predictions.decoder, config.sep_token_id, 100.0)  # every row ends at once
    features = _features(blip)
    with torch.inference_mode():
        rows = Rows(decoder, TOKENS)
        first = rows.join(features[:2])
        assert set(rows.step()) == set(first) and not rows.busy
        second = rows.join(features[2:])
        assert len(rows._keys) == 2 and rows._keys == second  # the finished two left
        assert rows._cache[0][0].shape[0] == 2 and rows._cross[0][0].shape[0] == 2
        assert set(rows.step()) == set(second)


@pytest.mark.parametrize("precision", ["fp32", "auto"])
def test_rolling_captions_equal_one_shot_captions(tiny_models: Path, precision: str) -> None:
    blip = _captioner(tiny_models, precision)
    photos = [Image.new("RGB", (320, 200), (200, 120, 40)), Image.new("RGB", (64, 90), (10, 200, 90)),
              Image.fromarray(np.random.default_rng(3).integers(0, 255, (120, 160, 3), dtype=np.uint8))]
    rolling, answers = blip.rows(), {}
    keys = rolling.join(photos[:1])
    answers.update(rolling.step())
    keys += rolling.join(photos[1:])
    while len(answers) < len(photos):
        answers.update(rolling.step())
    assert [answers[key] for key in keys] == blip.caption(photos) == [blip.caption([p])[0] for p in photos]
