"""Full-size models with random weights, for timing: the compute is the same as with real weights.

The default model set's architectures (image2mood/models/sets/default.json): open_clip ViT-B/32, BLIP-base
(384 px, a 30,524-entry WordPiece tokenizer laid out as BLIP's: [SEP]=102, [DEC]=30522), CLAP HTSAT-tiny
(``ClapConfig()``, checked against the set) and its projection head, in the layout of a model set
(``DIR/clip``, ``DIR/blip``, ``DIR/clap``, ``DIR/projection.pt``). Random BLIP never emits its end token, so
every caption runs to the token limit: timings are the worst case. The CLAP tokenizer is byte-level
(one token a character, cut at 64), so CLAP's text timings are a little above a real RoBERTa's.

    python bench/full_models.py DIR        # writes the set once; the benchmarks call full_size_set(DIR)
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import image2mood.models._torchvision  # noqa: F401  (first: lets transformers and open_clip import torchvision)

import open_clip
import torch
from safetensors.torch import save_model
from transformers import (BertTokenizerFast, BlipConfig, BlipForConditionalGeneration, BlipImageProcessor,
                          BlipProcessor, ClapConfig, ClapFeatureExtractor, ClapModel)

from image2mood.config import PROJECTION_FILE
from image2mood.models.projection import ProjectionConfig, ProjectionHead, save_projection
from image2mood.models.resolve import ResolvedModel
from image2mood.models.sets import model_set
from image2mood.models.tiny import _tiny_roberta_tokenizer

BERT_VOCAB = 30522  # bert-base-uncased; BLIP adds [DEC] and [ENC]
DONE = "full-size-random.json"


def _blip_tokenizer() -> BertTokenizerFast:
    special = {0: "[PAD]", 100: "[UNK]", 101: "[CLS]", 102: "[SEP]", 103: "[MASK]"}
    vocab = {special.get(i, f"w{i}"): i for i in range(BERT_VOCAB)}
    tokenizer = BertTokenizerFast(vocab=vocab, model_max_length=512)
    tokenizer.add_special_tokens({"bos_token": "[DEC]", "additional_special_tokens": ["[ENC]"]})
    assert len(tokenizer) == BERT_VOCAB + 2 and tokenizer.bos_token_id == BERT_VOCAB
    return tokenizer


def full_size_set(target: Path) -> Path:
    """Write the full-size random set into ``target`` unless it is there already; returns ``target``."""
    if (target / DONE).is_file():
        return target
    torch.manual_seed(0)
    default = model_set("default")
    clip_cfg = open_clip.get_model_config(default.models["clip"].architecture["open_clip"])
    (target / "clip").mkdir(parents=True, exist_ok=True)
    save_model(open_clip.CLIP(**clip_cfg), str(target / "clip" / "open_clip_model.safetensors"))
    (target / "clip" / "open_clip_config.json").write_text(json.dumps({"model_cfg": clip_cfg, "preprocess_cfg": {
        "mean": list(open_clip.OPENAI_DATASET_MEAN), "std": list(open_clip.OPENAI_DATASET_STD)}}))

    BlipForConditionalGeneration(BlipConfig(vision_config={"initializer_range": 0.02})).save_pretrained(target / "blip")
    side = default.models["blip"].image_size
    BlipProcessor(image_processor=BlipImageProcessor(size={"height": side, "width": side}),
                  tokenizer=_blip_tokenizer()).save_pretrained(target / "blip")

    clap_cfg = ClapConfig()  # transformers' default: laion/clap-htsat-unfused's architecture
    if clap_cfg.projection_dim != default.models["clap"].dim:
        raise SystemExit(f"ClapConfig() is {clap_cfg.projection_dim}-d, the default set's CLAP "
                         f"{default.models['clap'].dim}-d: give ClapConfig the set's sizes")
    ClapModel(clap_cfg).save_pretrained(target / "clap")
    ClapFeatureExtractor(truncation="rand_trunc", padding="repeatpad").save_pretrained(target / "clap")
    _tiny_roberta_tokenizer().save_pretrained(target / "clap")

    clip = ResolvedModel("clip", str(target / "clip"), target / "clip")
    clap = ResolvedModel("clap", str(target / "clap"), target / "clap")
    head = ProjectionHead(ProjectionConfig(in_dim=clip_cfg["embed_dim"], out_dim=default.models["clap"].dim,
                                           hidden=default.projection_hidden))
    save_projection(target / PROJECTION_FILE, head, clip, clap)
    (target / DONE).write_text(json.dumps({"random": True, "what": "full-size models for timing"}))
    return target


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dir", type=Path, help="where the model set goes (written once)")
    print(full_size_set(parser.parse_args().dir))
