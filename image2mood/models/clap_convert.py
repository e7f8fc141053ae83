"""Convert an original LAION-CLAP ``.pt`` checkpoint into a transformers ``ClapModel`` folder.

The LAION-CLAP releases (``630k-audioset-best.pt``, ``music_audioset_epoch_15_esc_90.14.pt``, ...) are
training checkpoints of the ``laion_clap`` package: ``{"state_dict": {"module.<name>": tensor}, ...}``
saved from a DistributedDataParallel run. This module renames their tensors to transformers' layout,
splits the audio tower's fused ``qkv`` projections, checks that every tensor found a place (and every
weight a tensor), and writes a folder that ``ClapModel.from_pretrained`` and
``AutoProcessor.from_pretrained`` load: ``model.safetensors`` and ``config.json``, the feature
extractor config (48 kHz, 10-s windows) and the RoBERTa tokenizer taken from ``tokenizer_source``.
Only unfused checkpoints with an HTSAT audio tower and a RoBERTa text tower are supported.
"""

from __future__ import annotations

import image2mood.models._torchvision  # noqa: F401  (first: lets transformers and open_clip import torchvision)

import re
import shutil
import warnings
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import torch
from transformers import AutoTokenizer, ClapConfig, ClapFeatureExtractor, ClapModel

from image2mood.errors import ModelLoadError, ModelNotFoundError, first_line
from image2mood.models.loading import check_tokenizer_size

# HTSAT audio towers as laion_clap builds them (its ``create_htsat_model``); unfused, 527 classes.
AUDIO_MODELS: dict[str, dict[str, Any]] = {
    "HTSAT-tiny": {"patch_embeds_hidden_size": 96, "depths": [2, 2, 6, 2], "hidden_size": 768},
    "HTSAT-base": {"patch_embeds_hidden_size": 128, "depths": [2, 2, 12, 2], "hidden_size": 1024},
}

# roberta-base's own config (laion_clap loads the text tower with from_pretrained("roberta-base")).
_ROBERTA_BASE = {
    "hidden_size": 768, "num_hidden_layers": 12, "num_attention_heads": 12, "intermediate_size": 3072,
    "max_position_embeddings": 514, "type_vocab_size": 1, "layer_norm_eps": 1e-5,
    "bos_token_id": 0, "pad_token_id": 1, "eos_token_id": 2,
}

# Original name -> transformers name; every rule whose pattern matches applies, in this order.
_RENAMES: tuple[tuple[str, str], ...] = (
    (r"^text_branch\.", "text_model."),
    (r"^audio_branch\.", "audio_model.audio_encoder."),
    (r"^(audio|text)_projection\.0\.", r"\1_projection.linear1."),
    (r"^(audio|text)_projection\.2\.", r"\1_projection.linear2."),
    (r"\.bn0\.", ".batch_norm."),
    (r"\.norm1\.", ".layernorm_before."),
    (r"\.norm2\.", ".layernorm_after."),
    (r"\.mlp\.fc1\.", ".intermediate.dense."),
    (r"\.mlp\.fc2\.", ".output.dense."),
    (r"\.attn\.proj\.", ".attention.output.dense."),
    (r"\.attn\.", ".attention.self."),
)
_QKV = re.compile(r"\.attention\.self\.qkv\.(weight|bias)$")

# Original tensors transformers has no place for: the mel front end (the feature extractor computes
# it), the AudioSet classifier head, the training-only ``*_transform`` MLPs, and index/mask buffers
# that the model rebuilds from its config.
_DROPPED = re.compile(
    r"^audio_branch\.(spectrogram_extractor|logmel_extractor|tscam_conv|head)\."
    r"|^(audio|text)_transform\."
    r"|\.attn_mask$|\.relative_position_index$|^text_branch\.embeddings\.position_ids$"
)
# Model buffers built from the config, never read from a checkpoint.
_REBUILT = re.compile(r"\.relative_position_index$|^text_model\.embeddings\.(position_ids|token_type_ids)$")
_FUSION = re.compile(r"^audio_branch\.(.*\.)?(fusion_model|mel_conv1d|mel_conv2d)\.")

# numpy scalars (epoch counters, metrics) beside the tensors: safe to rebuild, refused by default.
_NUMPY_GLOBALS: list[Any] = [
    (np._core.multiarray.scalar, "numpy.core.multiarray.scalar"),  # as pickled by numpy 1.x
    np._core.multiarray.scalar,
    np.dtype,
    *(getattr(np.dtypes, name) for name in np.dtypes.__all__),
]


def convert_laion_clap(
    checkpoint: Path,
    out_dir: Path,
    *,
    audio_model: str = "HTSAT-base",
    tokenizer_source: str | Path,
    trust_checkpoint: bool = False,
) -> Path:
    """Write ``checkpoint`` (an unfused HTSAT + RoBERTa LAION-CLAP ``.pt``) as a transformers CLAP
    folder at ``out_dir`` (new or empty) and return it. ``tokenizer_source`` is a folder or hub id
    holding roberta-base's tokenizer. ``trust_checkpoint`` lets a file that torch's safe loader
    refuses be unpickled in full, which can run code stored in it."""
    if audio_model not in AUDIO_MODELS:
        raise ModelLoadError(f"unknown audio model {audio_model!r}: choose one of {', '.join(AUDIO_MODELS)}")
    if out_dir.exists() and any(out_dir.iterdir()):
        raise ModelLoadError(f"{out_dir} is not empty: choose a new output folder or empty this one")
    original = load_laion_state_dict(checkpoint, trust_checkpoint=trust_checkpoint)
    config = clap_config(audio_model, vocab_size=_vocab_size(original, checkpoint))
    _check_fits(checkpoint, original, config, audio_model)
    tokenizer = _load_tokenizer(tokenizer_source, config)

    model = ClapModel(config).eval()
    # _check_fits proved that only buffers the model builds itself are left out
    model.load_state_dict(rename_laion_state_dict(original), strict=False)
    features = ClapFeatureExtractor(
        feature_size=64, sampling_rate=48_000, hop_length=480, max_length_s=10, fft_window_size=1024,
        frequency_min=50, frequency_max=14_000, truncation="rand_trunc", padding="repeatpad",
    )
    staging = out_dir.parent / f".{out_dir.name}.partial"  # a failed run leaves no half-written out_dir
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    try:
        model.save_pretrained(staging)
        features.save_pretrained(staging)  # files as the hub's CLAP ports have them;
        tokenizer.save_pretrained(staging)  # AutoProcessor finds ClapProcessor from config.json
        if out_dir.exists():
            out_dir.rmdir()
        staging.rename(out_dir)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return out_dir


def load_laion_state_dict(checkpoint: Path, *, trust_checkpoint: bool = False) -> dict[str, torch.Tensor]:
    """The checkpoint's tensors by their laion_clap names (``state_dict`` unwrapped, ``module.`` cut).

    Loads with ``weights_only=True`` (tensors, containers and numpy scalars only); a file that needs
    more, or uses a pickle protocol torch's safe loader lacks, is refused unless ``trust_checkpoint``."""
    if not checkpoint.is_file():
        raise ModelNotFoundError(f"LAION-CLAP checkpoint {checkpoint} does not exist: pass the path of its .pt file")
    if not zipfile.is_zipfile(checkpoint):  # torch >= 1.6 saves zip archives; LAION-CLAP's are newer
        raise ModelLoadError(f"{checkpoint} is not a torch checkpoint: pass the LAION-CLAP .pt file")
    try:  # mmap: tensors are read when used, so the optimizer state in the file never fills memory
        if trust_checkpoint:
            loaded = torch.load(checkpoint, map_location="cpu", weights_only=False, mmap=True)
        else:
            with torch.serialization.safe_globals(_NUMPY_GLOBALS), warnings.catch_warnings():
                warnings.filterwarnings("ignore", message="Detected pickle protocol")  # we explain it below
                loaded = torch.load(checkpoint, map_location="cpu", weights_only=True, mmap=True)
    except Exception as exc:  # torch raises many types for damaged or foreign files
        if not trust_checkpoint and "WeightsUnpickler error" in str(exc):
            raise ModelLoadError(
                f"{checkpoint}: torch's safe loader refuses it ({_weights_only_reason(exc)}). If you trust "
                f"where the file came from (e.g. LAION's own release), convert it again with "
                f"--trust-checkpoint: that unpickles it in full, which can run code stored in the file"
            ) from exc
        raise ModelLoadError(f"{checkpoint} could not be read as a torch checkpoint ({first_line(exc)})") from exc
    state = loaded.get("state_dict", loaded) if isinstance(loaded, dict) else None
    if not isinstance(state, dict) or not state or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ModelLoadError(f"{checkpoint} holds no state dict of tensors: it is not a LAION-CLAP checkpoint")
    state = {str(key).removeprefix("module."): value for key, value in state.items()}
    for branch in ("audio_branch.", "text_branch."):
        if not any(key.startswith(branch) for key in state):
            raise ModelLoadError(f"{checkpoint} has no {branch}* tensors: it is not a LAION-CLAP checkpoint")
    return state


def clap_config(audio_model: str, *, vocab_size: int) -> ClapConfig:
    """transformers' config for laion_clap's ``audio_model`` HTSAT + roberta-base, unfused, 512-d."""
    return ClapConfig(
        audio_config={**AUDIO_MODELS[audio_model], "enable_fusion": False, "projection_dim": 512},
        text_config={**_ROBERTA_BASE, "vocab_size": vocab_size, "projection_dim": 512},
        projection_dim=512,
    )


def transformers_name(key: str) -> str | None:
    """The transformers name of a laion_clap tensor (still ``...qkv...`` for a fused projection), or
    None for a tensor transformers does not keep."""
    if _DROPPED.search(key):
        return None
    for pattern, replacement in _RENAMES:
        key = re.sub(pattern, replacement, key)
    return key


def rename_laion_state_dict(original: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """laion_clap names -> transformers names; dropped tensors left out, ``qkv`` split in three."""
    renamed: dict[str, torch.Tensor] = {}
    for key, value in original.items():
        if (name := transformers_name(key)) is not None:
            renamed.update(_split_qkv(name, value))
    return renamed


def _split_qkv(name: str, value: torch.Tensor) -> dict[str, torch.Tensor]:
    if not _QKV.search(name):
        return {name: value}
    parts = zip(("query", "key", "value"), value.chunk(3, dim=0), strict=True)
    return {name.replace(".qkv.", f".{part}."): chunk for part, chunk in parts}


def _check_fits(checkpoint: Path, original: dict[str, torch.Tensor], config: ClapConfig, audio_model: str) -> None:
    """Refuse fusion checkpoints, wrong shapes, tensors with no place and weights with no tensor."""
    if any(_FUSION.search(key) for key in original):
        raise ModelLoadError(
            f"{checkpoint} is a fusion LAION-CLAP checkpoint (enable_fusion=True), which image2mood does not "
            f"support: use an unfused one such as music_audioset_epoch_15_esc_90.14.pt or 630k-audioset-best.pt"
        )
    with torch.device("meta"):
        expected = {k: tuple(v.shape) for k, v in ClapModel(config).state_dict().items()}
    wrong: list[str] = []
    unplaced: list[str] = []
    filled: set[str] = set()
    for key, value in original.items():
        if (name := transformers_name(key)) is None:
            continue
        parts = _split_qkv(name, value)
        if not all(part in expected for part in parts):
            unplaced.append(key)
            continue
        filled.update(parts)
        if any(tuple(tensor.shape) != expected[part] for part, tensor in parts.items()):
            want = expected[next(iter(parts))]
            want = (want[0] * len(parts), *want[1:]) if want else want  # qkv holds three of them
            wrong.append(f"{key} {tuple(value.shape)} vs {want}")
    if wrong:
        guess = _guess_audio_model(original)
        hint = (f"this looks like {guess}: pass --audio-model {guess}" if guess not in (None, audio_model)
                else "this is not an HTSAT + RoBERTa-base LAION-CLAP checkpoint")
        raise ModelLoadError(
            f"{checkpoint}: tensors that do not fit {audio_model} ({len(wrong)}, checkpoint vs model): "
            f"{_few(wrong)}; {hint}"
        )
    if unplaced:
        raise ModelLoadError(
            f"{checkpoint}: tensors with no place in an unfused {audio_model} + RoBERTa-base ClapModel "
            f"({len(unplaced)}): {_few(sorted(unplaced))}; this converter takes unfused HTSAT + RoBERTa "
            f"LAION-CLAP checkpoints"
        )
    unfilled = sorted(k for k in set(expected) - filled if not _REBUILT.search(k))
    if unfilled:
        raise ModelLoadError(
            f"{checkpoint}: weights of the {audio_model} ClapModel missing from it ({len(unfilled)}): "
            f"{_few(unfilled)}; the checkpoint is incomplete or of another architecture"
        )


def _load_tokenizer(source: str | Path, config: ClapConfig) -> Any:
    """roberta-base's tokenizer from a folder or hub id, refused when it is empty or not RoBERTa's."""
    try:
        tokenizer = AutoTokenizer.from_pretrained(str(source))
    except (OSError, ValueError, TypeError) as exc:
        raise ModelLoadError(
            f"tokenizer {source} could not be loaded ({first_line(exc)}); pass a folder "
            f"holding roberta-base's tokenizer (tokenizer.json, or vocab.json and merges.txt) or, where the hub "
            f"is reachable, roberta-base"
        ) from exc
    text = config.text_config
    size, vocab = len(tokenizer), text.vocab_size
    fix = "pass a folder holding roberta-base's tokenizer"
    check_tokenizer_size(tokenizer, vocab, f"tokenizer {source}", "RoBERTa", fix)
    ids = (tokenizer.bos_token_id, tokenizer.pad_token_id, tokenizer.eos_token_id)
    if ids != (text.bos_token_id, text.pad_token_id, text.eos_token_id):
        raise ModelLoadError(
            f"tokenizer {source} has <s>/<pad>/</s> ids {ids}: that is not a RoBERTa tokenizer "
            f"(roberta-base's has ids 0, 1, 2); {fix}"
        )
    if size < vocab:
        warnings.warn(
            f"tokenizer {source} has {size} entries, the checkpoint's text tower {vocab}: the model will "
            f"work but only roberta-base's own tokenizer gives the texts the ids it was trained on",
            stacklevel=3,
        )
    return tokenizer


def _vocab_size(original: dict[str, torch.Tensor], checkpoint: Path) -> int:
    embedding = original.get("text_branch.embeddings.word_embeddings.weight")
    if embedding is None or embedding.dim() != 2:
        raise ModelLoadError(
            f"{checkpoint} has no RoBERTa word embeddings: it is not an HTSAT + RoBERTa LAION-CLAP checkpoint"
        )
    return int(embedding.shape[0])


def _guess_audio_model(original: dict[str, torch.Tensor]) -> str | None:
    """The HTSAT size whose patch-embedding width the checkpoint has."""
    patch = original.get("audio_branch.patch_embed.proj.weight")
    width = int(patch.shape[0]) if patch is not None else None
    return next((name for name, cfg in AUDIO_MODELS.items() if cfg["patch_embeds_hidden_size"] == width), None)


def _weights_only_reason(exc: Exception) -> str:
    """The informative clause of torch's long weights_only message."""
    found = re.search(r"WeightsUnpickler error:\s*(.+?)(?:\. |\n|$)", str(exc))
    return found.group(1) if found else first_line(exc)


def _few(names: list[str], n: int = 3) -> str:
    return ", ".join(names[:n]) + (f" (and {len(names) - n} more)" if len(names) > n else "")
