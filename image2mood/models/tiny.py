"""Write a tiny, randomly initialised model set of the real architectures (CLIP, BLIP, CLAP).

The set has the layout of a real one (``DIR/clip``, ``DIR/blip``, ``DIR/clap``, each loadable from
its folder exactly as a downloaded model is), so ``IMAGE2MOOD_MODELS=DIR`` runs every command with no
downloads. The weights are random: results are meaningless, the code paths are the real ones.
"""

from __future__ import annotations

import image2mood.models._torchvision  # noqa: F401  (first: lets transformers and open_clip import torchvision)

import json
from pathlib import Path

import open_clip
import torch
from safetensors.torch import save_model
from tokenizers.pre_tokenizers import ByteLevel
from transformers import (
    BertTokenizerFast,
    BlipConfig,
    BlipForConditionalGeneration,
    BlipImageProcessor,
    BlipProcessor,
    ClapAudioConfig,
    ClapConfig,
    ClapFeatureExtractor,
    ClapModel,
    ClapTextConfig,
    RobertaTokenizerFast,
)

from image2mood.config import PROJECTION_FILE, TINY_MARKER
from image2mood.models.projection import ProjectionConfig, ProjectionHead, save_projection
from image2mood.models.resolve import ResolvedModel

CLAP_DIM = 512  # CLAP's joint space keeps its real width, so stored vectors have the real shape

# Enough words for BLIP's tokenizer to spell captions of photos with.
_WORDS = (
    "a an the of in on at with and by near under over photo picture image man woman child people "
    "group dog cat bird street city road night day sunset sunrise beach sea ocean sky cloud rain snow "
    "mountain forest tree flower field party dance concert face smiling sad happy crying laughing "
    "portrait room table car window light dark red blue green yellow black white old young two three"
).split()


def write_tiny_set(target: Path, seed: int = 0) -> Path:
    """Write tiny CLIP, BLIP and CLAP models into ``target``/{clip,blip,clap}; returns ``target``."""
    target.mkdir(parents=True, exist_ok=True)
    write_tiny_clip(target / "clip", seed)
    write_tiny_blip(target / "blip", seed)
    write_tiny_clap(target / "clap", seed)
    write_tiny_projection(target, seed)
    _mark(target, "model set")
    return target


def _mark(folder: Path, what: str) -> None:
    note = {"tiny": True, "what": what, "note": "random weights written by `image2mood models tiny`"}
    (folder / TINY_MARKER).write_text(json.dumps(note, indent=2) + "\n")


def write_tiny_clip(folder: Path, seed: int = 0) -> None:
    """open_clip CLIP (ViT image tower, the real CLIP BPE tokenizer) in the hub layout."""
    folder.mkdir(parents=True, exist_ok=True)
    model_cfg = {
        "embed_dim": 64,
        "vision_cfg": {"image_size": 224, "layers": 2, "width": 64, "head_width": 32, "patch_size": 32},
        "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 64, "heads": 2, "layers": 2},
    }
    torch.manual_seed(seed)
    model = open_clip.CLIP(**model_cfg)
    save_model(model, str(folder / "open_clip_model.safetensors"))
    config = {"model_cfg": model_cfg, "preprocess_cfg": {
        "mean": list(open_clip.OPENAI_DATASET_MEAN), "std": list(open_clip.OPENAI_DATASET_STD)}}
    (folder / "open_clip_config.json").write_text(json.dumps(config, indent=2) + "\n")
    _mark(folder, "CLIP")


def _tiny_bert_tokenizer() -> BertTokenizerFast:
    letters = [chr(c) for c in range(ord("a"), ord("z") + 1)] + list("0123456789.,'!?-")
    vocab = list(dict.fromkeys(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *letters,
                                *("##" + c for c in letters), *_WORDS]))
    tokenizer = BertTokenizerFast(vocab={t: i for i, t in enumerate(vocab)}, model_max_length=64)
    tokenizer.add_special_tokens({"bos_token": "[DEC]", "additional_special_tokens": ["[ENC]"]})
    if len(tokenizer) != len(vocab) + 2:
        raise RuntimeError(f"tiny BLIP tokenizer came out with {len(tokenizer)} entries, not {len(vocab) + 2}")
    return tokenizer


def write_tiny_blip(folder: Path, seed: int = 0) -> None:
    """transformers BLIP captioner with a small WordPiece tokenizer of BLIP's special tokens."""
    folder.mkdir(parents=True, exist_ok=True)
    tokenizer = _tiny_bert_tokenizer()
    image_size = 64
    config = BlipConfig(
        text_config={
            "vocab_size": len(tokenizer), "hidden_size": 32, "encoder_hidden_size": 32,
            "intermediate_size": 64, "num_hidden_layers": 2, "num_attention_heads": 2,
            "max_position_embeddings": 64, "pad_token_id": tokenizer.pad_token_id,
            "bos_token_id": tokenizer.bos_token_id, "sep_token_id": tokenizer.sep_token_id,
            "eos_token_id": tokenizer.sep_token_id,
        },
        vision_config={
            "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2,
            "num_attention_heads": 2, "image_size": image_size, "patch_size": 16,
        },
        projection_dim=32,
    )
    torch.manual_seed(seed)
    BlipForConditionalGeneration(config).save_pretrained(folder)
    processor = BlipProcessor(
        image_processor=BlipImageProcessor(size={"height": image_size, "width": image_size}),
        tokenizer=tokenizer,
    )
    processor.save_pretrained(folder)
    _mark(folder, "BLIP")


def _tiny_roberta_tokenizer() -> RobertaTokenizerFast:
    specials = ["<s>", "<pad>", "</s>", "<unk>"]
    vocab = {token: i for i, token in enumerate([*specials, *sorted(ByteLevel.alphabet())])}
    vocab["<mask>"] = len(vocab)
    tokenizer = RobertaTokenizerFast(vocab=vocab, merges=[], model_max_length=64)
    if len(tokenizer) != len(vocab):
        raise RuntimeError(f"tiny CLAP tokenizer came out with {len(tokenizer)} entries, not {len(vocab)}")
    return tokenizer


def write_tiny_clap(folder: Path, seed: int = 0) -> None:
    """transformers CLAP (unfused HTSAT audio tower, RoBERTa text tower) with a byte-level tokenizer."""
    folder.mkdir(parents=True, exist_ok=True)
    tokenizer = _tiny_roberta_tokenizer()
    config = ClapConfig(
        text_config=ClapTextConfig(
            vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
            num_attention_heads=2, max_position_embeddings=tokenizer.model_max_length + 2,
            type_vocab_size=1, pad_token_id=tokenizer.pad_token_id, bos_token_id=tokenizer.bos_token_id,
            eos_token_id=tokenizer.eos_token_id, projection_dim=CLAP_DIM,
        ).to_dict(),
        audio_config=ClapAudioConfig(
            depths=[1, 1], num_attention_heads=[2, 2], patch_embeds_hidden_size=16, hidden_size=32,
            window_size=8, enable_fusion=False, projection_dim=CLAP_DIM,
        ).to_dict(),
        projection_dim=CLAP_DIM,
    )
    torch.manual_seed(seed)
    ClapModel(config).save_pretrained(folder)
    ClapFeatureExtractor(truncation="rand_trunc", padding="repeatpad").save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    _mark(folder, "CLAP")


def write_tiny_projection(target: Path, seed: int = 0) -> Path:
    """A random projection head from the tiny CLIP's space into CLAP's, beside the tiny models."""
    clip = ResolvedModel("clip", str(target / "clip"), target / "clip")
    clap = ResolvedModel("clap", str(target / "clap"), target / "clap")
    in_dim = json.loads((clip.folder / "open_clip_config.json").read_text())["model_cfg"]["embed_dim"]
    torch.manual_seed(seed)
    head = ProjectionHead(ProjectionConfig(in_dim=in_dim, out_dim=CLAP_DIM, hidden=128))
    return save_projection(target / PROJECTION_FILE, head, clip, clap)
