"""CLAP's audio tower (HTSAT and its projection) in torch alone, its weights read by name from the model folder.

``index`` needs only this half of CLAP. Importing transformers' CLAP modelling costs 2 s (it pulls in
``torch.distributed.tensor``, ``torch._dynamo`` and sympy), all of it before a run's first song can be embedded;
this module imports torch alone. Its modules carry transformers' attribute names, so the folder's weights
(``model.safetensors``, its shards, or ``pytorch_model.bin``) load by name, and the tests hold its vectors to
transformers' ``ClapModel.get_audio_features``. Its Swin stages run :mod:`image2mood.models.swin`'s way, in
fewer passes over memory than transformers' code, and its patch embedding's convolution has channels-last weights,
so it writes channels-last: its output, flattened to tokens, is contiguous and its norm reads it without a
transposing copy (convolution and norm 19–21 → 7–8.5 ms for 8 windows in bf16).

A fusion model ("clap-htsat-fused") runs its global branch only, as transformers' does for windows no longer than
the model's, which is all ``ClapEncoder`` gives it. A configuration real CLAP checkpoints do not have (windows that
do not tile a stage's grid, another activation) is refused with its reason.
"""

from __future__ import annotations

import pickle
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from image2mood.models.clap_facts import DEFAULT_DIM, read_json
from image2mood.models.swin import run_stage

_UNUSED = (".relative_position_index", ".patch_embed.fusion_model.", ".patch_embed.mel_conv2d.")
"""Checkpoint entries the tower does not take: an index it computes, and a fusion model's long-input branch."""


@dataclass(frozen=True)
class HtsatConfig:
    """The audio tower's shape: the ``audio_config`` of a CLAP ``config.json``, with transformers'
    ``ClapAudioConfig`` defaults where it is silent (a test holds them equal)."""

    depths: tuple[int, ...] = (2, 2, 6, 2)
    num_attention_heads: tuple[int, ...] = (4, 8, 16, 32)
    patch_embeds_hidden_size: int = 96
    window_size: int = 8
    spec_size: int = 256
    num_mel_bins: int = 64
    patch_size: int = 4
    patch_stride: tuple[int, int] = (4, 4)
    patch_embed_input_channels: int = 1
    enable_fusion: bool = False
    fusion_type: str | None = None
    enable_patch_layer_norm: bool = True
    flatten_patch_embeds: bool = True
    mlp_ratio: float = 4.0
    qkv_bias: bool = True
    layer_norm_eps: float = 1e-5
    hidden_act: str = "gelu"
    hidden_size: int = 768
    projection_dim: int = DEFAULT_DIM
    projection_hidden_act: str = "relu"

    @classmethod
    def from_model_config(cls, config: dict[str, Any]) -> HtsatConfig:
        """The tower of a CLAP ``config.json`` (a ``ClapModel``'s, or an audio tower's own); ValueError says what
        this module does not run."""
        audio = dict(config.get("audio_config") or config)
        for key in ("projection_dim", "projection_hidden_act"):  # ClapConfig hands its own to both towers
            if key in config:
                audio[key] = config[key]
        values = {f.name: audio[f.name] for f in fields(cls) if audio.get(f.name) is not None}
        for key in ("depths", "num_attention_heads"):
            values[key] = tuple(values.get(key, getattr(cls, key)))
        stride = values.get("patch_stride", cls.patch_stride)
        values["patch_stride"] = (stride, stride) if isinstance(stride, int) else tuple(stride)
        made = cls(**values)
        made.check()
        return made

    @property
    def grid(self) -> int:
        """The patch grid's side: the spectrogram image's side over the patch stride."""
        return self.spec_size // self.patch_stride[0]

    def check(self) -> None:
        """Raise ValueError naming what this module does not run (no real CLAP checkpoint has it)."""
        unsupported = []
        if (self.hidden_act, self.projection_hidden_act) != ("gelu", "relu"):
            unsupported.append(f"activations {self.hidden_act}/{self.projection_hidden_act} (CLAP's are gelu/relu)")
        if self.fusion_type == "channel_map" or self.patch_embed_input_channels != 1 or not self.flatten_patch_embeds:
            unsupported.append("a patch embedding other than CLAP's")
        if (self.patch_stride[0] != self.patch_stride[1] or self.spec_size % self.num_mel_bins
                or self.spec_size // (self.spec_size // self.num_mel_bins) != self.num_mel_bins):
            unsupported.append(f"a {self.spec_size}-wide spectrogram image of {self.num_mel_bins} mels")
        for i in range(len(self.depths)):
            side = self.grid >> i
            if side % self.window_size:  # also a grid smaller than one window
                unsupported.append(f"stage {i}'s {side}×{side} grid in {self.window_size}-token windows")
        if unsupported:
            raise ValueError("this CLAP audio tower has " + "; ".join(unsupported))


class HtsatTower(nn.Module):
    """CLAP's audio tower: log-mels ``[n, 1, frames, mels]`` in, L2-normalised CLAP vectors ``[n, dim]`` out."""

    def __init__(self, config: HtsatConfig) -> None:
        super().__init__()
        self.config = config
        self.audio_model = _Holder(audio_encoder=_Encoder(config))
        self.audio_projection = _Projection(config)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.audio_projection(self.audio_model.audio_encoder(features)), dim=-1)

    @classmethod
    def load(cls, folder: Path) -> HtsatTower:
        """The tower of the CLAP model in ``folder``, in eval mode; errors name what is missing or unsupported."""
        with torch.device("meta"):  # no random initialisation: every tensor comes from the checkpoint
            tower = cls(HtsatConfig.from_model_config(read_json(folder / "config.json")))
        weights = {k: v for k, v in read_weights(folder, ("audio_model.", "audio_projection.")).items()
                   if not any(part in k for part in _UNUSED)}
        try:
            missing, unexpected = tower.load_state_dict(weights, strict=False, assign=True)
        except RuntimeError as e:  # a shape that differs: its line, not the header above it
            raise ValueError(str(e).splitlines()[-1].strip()) from e
        if missing or unexpected:
            found = [f"no {missing[0]} (of {len(missing)} missing)"] if missing else []
            found += [f"an unknown {unexpected[0]} (of {len(unexpected)})"] if unexpected else []
            raise ValueError(f"its audio weights are not HTSAT's: {', '.join(found)}")
        tower.audio_model.audio_encoder.patch_embed.proj.to(memory_format=torch.channels_last)  # module docstring
        return tower.eval().requires_grad_(False)


def read_weights(folder: Path, prefixes: tuple[str, ...]) -> dict[str, torch.Tensor]:
    """The tensors under ``prefixes`` in ``folder``'s checkpoint: ``model.safetensors``, the shards its index
    names, or ``pytorch_model.bin``. A file that does not read is an OSError naming it."""
    from safetensors import SafetensorError, safe_open

    index = folder / "model.safetensors.index.json"
    if (folder / "model.safetensors").is_file():
        files = [folder / "model.safetensors"]
    elif index.is_file():
        files = [folder / name for name in sorted(set(read_json(index)["weight_map"].values()))]
    elif (folder / "pytorch_model.bin").is_file():
        files = [folder / "pytorch_model.bin"]
    else:
        raise FileNotFoundError(f"no model.safetensors or pytorch_model.bin in {folder}")
    weights = {}
    for file in files:
        try:
            if file.suffix == ".bin":
                state = torch.load(file, map_location="cpu", weights_only=True, mmap=True)
                weights.update((k, v) for k, v in state.items() if k.startswith(prefixes))
                continue
            with safe_open(str(file), framework="pt") as checkpoint:
                weights.update((k, checkpoint.get_tensor(k)) for k in checkpoint.keys() if k.startswith(prefixes))
        except (SafetensorError, pickle.UnpicklingError, RuntimeError, EOFError) as e:
            raise OSError(f"cannot read {file}: {e}") from e
    return weights


class _Holder(nn.Module):
    """Submodules under the names transformers gives them, so that checkpoint keys match."""

    def __init__(self, /, **parts: nn.Module) -> None:  # positional-only: "self" is one of the names
        super().__init__()
        for name, part in parts.items():
            setattr(self, name, part)


class _Encoder(nn.Module):
    """transformers' ``ClapAudioEncoder`` for windows no longer than the model's: its pooled output."""

    def __init__(self, config: HtsatConfig) -> None:
        super().__init__()
        self.spec_size, self.freq_ratio = config.spec_size, config.spec_size // config.num_mel_bins
        width = config.patch_embeds_hidden_size
        self.patch_embed = _PatchEmbed(config)
        last = len(config.depths) - 1
        self.layers = nn.ModuleList(
            _Stage(config, width << i, config.grid >> i, depth, heads, merge=i < last)
            for i, (depth, heads) in enumerate(zip(config.depths, config.num_attention_heads, strict=True)))
        self.batch_norm = nn.BatchNorm2d(config.num_mel_bins)
        self.norm = nn.LayerNorm(width << last)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        x = self.batch_norm(features.transpose(1, 3)).transpose(1, 3)
        x = self.patch_embed(self._image(x))
        for stage in self.layers:
            x = stage(x)
        # transformers regroups the tokens into frequency bands, then averages all of them: their mean
        return self.norm(x).mean(1)

    def _image(self, x: torch.Tensor) -> torch.Tensor:
        """transformers' ``reshape_mel2img``: ``[n, c, frames, mels]`` stretched to ``spec_size × freq_ratio``
        frames, folded into a square ``spec_size`` image."""
        batch, channels, frames, mels = x.shape
        width = self.spec_size * self.freq_ratio
        if frames > width:
            raise ValueError(f"the log-mel has {frames} frames; the model takes at most {width}")
        if frames < width:
            x = F.interpolate(x, (width, mels), mode="bicubic", align_corners=True)
        x = x.reshape(batch, channels * self.freq_ratio, width // self.freq_ratio, mels).permute(0, 1, 3, 2)
        return x.contiguous().reshape(batch, channels, mels * self.freq_ratio, width // self.freq_ratio)


class _PatchEmbed(nn.Module):
    def __init__(self, config: HtsatConfig) -> None:
        super().__init__()
        size, stride = config.patch_size, config.patch_stride
        self.proj = nn.Conv2d(1, config.patch_embeds_hidden_size, kernel_size=size, stride=stride,
                              padding=((size - stride[0]) // 2, (size - stride[1]) // 2))
        self.norm = nn.LayerNorm(config.patch_embeds_hidden_size) if config.enable_patch_layer_norm else nn.Identity()

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return self.norm(self.proj(image).flatten(2).transpose(1, 2))


class _SelfAttention(nn.Module):
    def __init__(self, dim: int, heads: int, window: int, bias: bool) -> None:
        super().__init__()
        self.num_attention_heads, self.attention_head_size, self.window_size = heads, dim // heads, window
        self.relative_position_bias_table = nn.Parameter(torch.zeros((2 * window - 1) ** 2, heads))
        self.query, self.key, self.value = (nn.Linear(dim, dim, bias=bias) for _ in range(3))


class _Block(nn.Module):
    """A Swin block's weights (transformers' ``ClapAudioLayer``); :mod:`image2mood.models.swin` runs it."""

    def __init__(self, config: HtsatConfig, dim: int, heads: int, window: int, shift: int) -> None:
        super().__init__()
        self.window_size, self.shift_size = window, shift
        inner = int(config.mlp_ratio * dim)
        self.layernorm_before = nn.LayerNorm(dim, eps=config.layer_norm_eps)
        self.attention = _Holder(self=_SelfAttention(dim, heads, window, config.qkv_bias),
                                 output=_Holder(dense=nn.Linear(dim, dim)))
        self.layernorm_after = nn.LayerNorm(dim, eps=config.layer_norm_eps)
        self.intermediate = _Holder(dense=nn.Linear(dim, inner))
        self.output = _Holder(dense=nn.Linear(inner, dim))


class _Stage(nn.Module):
    """Swin blocks on a ``side × side`` grid, every second one shifted, then (but for the last) a patch merging."""

    def __init__(self, config: HtsatConfig, dim: int, side: int, depth: int, heads: int, merge: bool) -> None:
        super().__init__()
        window = config.window_size
        shift = window // 2 if side > window else 0  # one window covering the grid: transformers shifts nothing
        self.side = side
        self.blocks = nn.ModuleList(_Block(config, dim, heads, window, shift if i % 2 else 0) for i in range(depth))
        self.downsample = _PatchMerging(dim) if merge else None
        self.plans: dict[tuple[torch.dtype, torch.device], object] = {}  # run_stage's, by dtype and device

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = run_stage(self, x)
        return x if self.downsample is None else self.downsample(x, self.side)


class _PatchMerging(nn.Module):
    """Each 2×2 patch's four tokens side by side, normed and reduced to twice the width."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.reduction = nn.Linear(4 * dim, 2 * dim, bias=False)
        self.norm = nn.LayerNorm(4 * dim)

    def forward(self, x: torch.Tensor, side: int) -> torch.Tensor:
        batch, _, channels = x.shape
        grid = x.view(batch, side, side, channels)
        merged = torch.cat([grid[:, row::2, col::2, :] for col in range(2) for row in range(2)], dim=-1)
        return self.reduction(self.norm(merged.view(batch, -1, 4 * channels)))


class _Projection(nn.Module):
    def __init__(self, config: HtsatConfig) -> None:
        super().__init__()
        self.linear1 = nn.Linear(config.hidden_size, config.projection_dim)
        self.linear2 = nn.Linear(config.projection_dim, config.projection_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear2(F.relu(self.linear1(x)))
