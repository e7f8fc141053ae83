"""Write a tiny, randomly initialised model set of the real architectures (CLIP, BLIP, CLAP, NLLB).

The set has the layout of a real one (``DIR/clip``, ``DIR/blip``, ``DIR/clap``, ``DIR/translator``, each loadable from
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
from tokenizers import Tokenizer, models, pre_tokenizers, trainers
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
    M2M100Config,
    M2M100ForConditionalGeneration,
    NllbTokenizer,
    RobertaTokenizerFast,
)

from image2mood.config import PROJECTION_FILE, TINY_MARKER
from image2mood.models.projection import ProjectionConfig, ProjectionHead, save_projection
from image2mood.models.resolve import ResolvedModel
from image2mood.models.sets import model_set

TINY = model_set("tiny")
"""The tiny set's sizes and layers (image2mood/models/sets/tiny.json)."""
CLAP_DIM = TINY.models["clap"].dim  # CLAP's joint space keeps its real width, so stored vectors have the real shape

# Enough words for BLIP's tokenizer to spell captions of photos with.
_WORDS = (
    "a an the of in on at with and by near under over photo picture image man woman child people "
    "group dog cat bird street city road night day sunset sunrise beach sea ocean sky cloud rain snow "
    "mountain forest tree flower field party dance concert face smiling sad happy crying laughing "
    "portrait room table car window light dark red blue green yellow black white old young two three"
).split()
# And for the tiny translator's tokenizer, Korean to spell translations with.
_KOREAN = ("사진 남자 여자 아이 사람들 개 고양이 새 거리 도시 밤 낮 해변 바다 하늘 구름 비 눈 산 숲 나무 꽃 "
           "파티 춤 얼굴 웃는 슬픈 행복한 차분한 신나는 어두운 밝은 빨간 파란 오래된 젊은 두 세").split()


def write_tiny_set(target: Path, seed: int = 0) -> Path:
    """Write tiny CLIP, BLIP, CLAP and NLLB models into ``target``/{clip,blip,clap,translator}; returns ``target``."""
    target.mkdir(parents=True, exist_ok=True)
    write_tiny_clip(target / "clip", seed)
    write_tiny_blip(target / "blip", seed)
    write_tiny_clap(target / "clap", seed)
    write_tiny_translator(target / "translator", seed)
    write_tiny_projection(target, seed)
    _mark(target, "model set")
    return target


def _mark(folder: Path, what: str) -> None:
    note = {"tiny": True, "what": what, "note": "random weights written by `image2mood models tiny`"}
    (folder / TINY_MARKER).write_text(json.dumps(note, indent=2) + "\n")


def write_tiny_clip(folder: Path, seed: int = 0) -> None:
    """open_clip CLIP (ViT image tower, the real CLIP BPE tokenizer) in the hub layout."""
    folder.mkdir(parents=True, exist_ok=True)
    entry = TINY.models["clip"]
    model_cfg = {
        "embed_dim": entry.dim,
        "vision_cfg": {"image_size": entry.image_size, **entry.architecture["vision_cfg"]},
        "text_cfg": entry.architecture["text_cfg"],
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
    entry = TINY.models["blip"]
    image_size = entry.image_size
    config = BlipConfig(
        text_config={
            **entry.architecture["text_config"], "vocab_size": len(tokenizer), "pad_token_id": tokenizer.pad_token_id,
            "bos_token_id": tokenizer.bos_token_id, "sep_token_id": tokenizer.sep_token_id,
            "eos_token_id": tokenizer.sep_token_id,
        },
        # transformers' BLIP default initialises the vision tower at std 1e-10: every photo would get the same features
        vision_config={**entry.architecture["vision_config"], "image_size": image_size, "initializer_range": 0.02},
        projection_dim=entry.architecture["projection_dim"],
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
    layers = TINY.models["clap"].architecture
    config = ClapConfig(
        text_config=ClapTextConfig(
            **layers["text_config"], vocab_size=len(tokenizer), max_position_embeddings=tokenizer.model_max_length + 2,
            type_vocab_size=1, pad_token_id=tokenizer.pad_token_id, bos_token_id=tokenizer.bos_token_id,
            eos_token_id=tokenizer.eos_token_id, projection_dim=CLAP_DIM,
        ).to_dict(),
        audio_config=ClapAudioConfig(**layers["audio_config"], enable_fusion=False, projection_dim=CLAP_DIM).to_dict(),
        projection_dim=CLAP_DIM,
    )
    torch.manual_seed(seed)
    ClapModel(config).save_pretrained(folder)
    ClapFeatureExtractor(sampling_rate=TINY.models["clap"].sample_rate, truncation="rand_trunc",
                         padding="repeatpad").save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    _mark(folder, "CLAP")


def _tiny_nllb_tokenizer() -> NllbTokenizer:
    """NLLB's tokenizer (its special tokens, its 204 language codes, its Metaspace pre-tokenizer) over a small
    BPE vocabulary trained here on English and Korean words."""
    specials = ["<s>", "<pad>", "</s>", "<unk>"]  # NLLB's ids 0-3
    bpe = Tokenizer(models.BPE(unk_token="<unk>"))
    bpe.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always", split=True)
    bpe.train_from_iterator([" ".join(_WORDS), " ".join(_KOREAN)], trainers.BpeTrainer(
        vocab_size=400, special_tokens=specials, show_progress=False))
    trained = json.loads(bpe.to_str())["model"]
    tokenizer = NllbTokenizer(vocab=trained["vocab"], merges=[tuple(m) for m in trained["merges"]],
                              model_max_length=128)
    if tokenizer.convert_tokens_to_ids("kor_Hang") == tokenizer.unk_token_id:
        raise RuntimeError("tiny NLLB tokenizer came out without its language codes")
    return tokenizer


def write_tiny_translator(folder: Path, seed: int = 0) -> None:
    """transformers M2M100 (NLLB-200's architecture, a few layers) with an NLLB tokenizer.

    The output layer is untied from the embeddings (NLLB ties them) so that the language codes' and ``<mask>``'s
    output rows alone are scaled down: the random model writes words rather than codes (which decoding drops),
    and the target's code, forced first, still steers it: its translations are non-empty gibberish that differs
    by text and by target language."""
    folder.mkdir(parents=True, exist_ok=True)
    tokenizer = _tiny_nllb_tokenizer()
    config = M2M100Config(
        **TINY.models["translator"].architecture, vocab_size=len(tokenizer), scale_embedding=True, init_std=0.3,
        tie_word_embeddings=False, pad_token_id=tokenizer.pad_token_id, bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id, decoder_start_token_id=tokenizer.eos_token_id,
    )
    torch.manual_seed(seed)
    model = M2M100ForConditionalGeneration(config)
    codes = tokenizer.convert_tokens_to_ids([*tokenizer.extra_special_tokens, "<mask>"])
    with torch.no_grad():
        model.get_output_embeddings().weight[codes] *= 0.01
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    _mark(folder, "NLLB translator")


def write_tiny_projection(target: Path, seed: int = 0) -> Path:
    """A random projection head from the tiny CLIP's space into CLAP's, beside the tiny models."""
    clip = ResolvedModel("clip", str(target / "clip"), target / "clip")
    clap = ResolvedModel("clap", str(target / "clap"), target / "clap")
    in_dim = json.loads((clip.folder / "open_clip_config.json").read_text())["model_cfg"]["embed_dim"]
    torch.manual_seed(seed)
    head = ProjectionHead(ProjectionConfig(in_dim=in_dim, out_dim=CLAP_DIM, hidden=TINY.projection_hidden))
    return save_projection(target / PROJECTION_FILE, head, clip, clap)
