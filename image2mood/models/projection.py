"""The projection head: CLIP image vectors into CLAP's joint space, where the songs are.

A checkpoint is a plain ``torch.save`` dict: ``format``, ``config`` (dimensions, hidden width) and
``trained_for`` (fingerprints of the CLIP and CLAP models it was trained against), ``state_dict``.
The trainer writes it; the query path loads it and refuses one made for other models.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from torch import nn

from image2mood.errors import ModelLoadError
from image2mood.models.fingerprint import model_fingerprint
from image2mood.models.resolve import ResolvedModel

FORMAT = "image2mood-projection/1"


@dataclass(frozen=True)
class ProjectionConfig:
    in_dim: int
    out_dim: int
    hidden: int = 0  # 0: one linear layer; else Linear → GELU → Linear


class ProjectionHead(nn.Module):
    """Maps L2-normalised CLIP image vectors to L2-normalised CLAP vectors."""

    def __init__(self, config: ProjectionConfig) -> None:
        super().__init__()
        self.config = config
        if config.hidden:
            self.net = nn.Sequential(nn.Linear(config.in_dim, config.hidden), nn.GELU(),
                                     nn.Linear(config.hidden, config.out_dim))
        else:
            self.net = nn.Linear(config.in_dim, config.out_dim)

    def forward(self, clip_vectors: torch.Tensor) -> torch.Tensor:
        return nn.functional.normalize(self.net(clip_vectors), dim=-1)


def save_projection(path: Path, head: ProjectionHead, clip: ResolvedModel, clap: ResolvedModel) -> Path:
    """Write a checkpoint that records the models ``head`` was trained for."""
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({
        "format": FORMAT,
        "config": asdict(head.config),
        "trained_for": {"clip": model_fingerprint(clip), "clap": model_fingerprint(clap),
                        "clip_spec": clip.spec, "clap_spec": clap.spec},
        "state_dict": head.state_dict(),
    }, path)
    return path


def load_projection(path: Path, clip: ResolvedModel, clap: ResolvedModel) -> ProjectionHead:
    """Load a checkpoint, refusing one that is not ours or was trained for other CLIP/CLAP models."""
    if not path.is_file():
        raise ModelLoadError(f"projection checkpoint {path} does not exist; fix IMAGE2MOOD_PROJECTION "
                             "or unset it to serve photos by their caption alone")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # pickle, zip and torch errors all mean "not a checkpoint of ours"
        raise ModelLoadError(f"{path} is not a projection checkpoint ({type(exc).__name__})") from exc
    if not isinstance(checkpoint, dict) or checkpoint.get("format") != FORMAT:
        raise ModelLoadError(f"{path} is not an image2mood projection checkpoint (format {FORMAT})")
    trained_for = checkpoint["trained_for"]
    for kind, model in (("clip", clip), ("clap", clap)):
        if trained_for[kind] != model_fingerprint(model):
            raise ModelLoadError(
                f"projection checkpoint {path} was trained for {kind.upper()} model "
                f"{trained_for[f'{kind}_spec']!r}, not the configured {model.spec!r}; train one for "
                f"these models, configure the models it was made for, or unset IMAGE2MOOD_PROJECTION"
            )
    head = ProjectionHead(ProjectionConfig(**checkpoint["config"]))
    head.load_state_dict(checkpoint["state_dict"])
    return head.eval()
