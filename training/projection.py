"""The projection-head trainer: CLIP vectors in, CLAP text vectors of the same captions out.

Two modes share one loop:

- ``image-caption``: input a photo's CLIP image vector, target the CLAP text vector of its caption.
- ``text-bridge`` (after C-MCR, no images): input the CLIP *text* vector of a caption, target its
  CLAP text vector. The head is later fed CLIP *image* vectors, which sit apart from CLIP's text
  vectors (the modality gap). As in C-MCR, the inputs are re-centred (the training mean is
  subtracted, folded into the first layer's bias when saved) and Gaussian noise is added to them
  while training, so the head learns a neighbourhood of each text vector rather than the point.

The loss is symmetric InfoNCE with a learnable temperature; rows sharing a caption are not counted
as negatives of each other. Every epoch logs train/valid loss and valid Recall@1/5/10 of input →
caption; the head of the best epoch (by mean valid recall, then valid loss) is kept.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass, field
from operator import attrgetter
from pathlib import Path

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from image2mood.config import Settings
from image2mood.models import factory
from image2mood.models.fingerprint import model_fingerprint
from image2mood.models.projection import ProjectionConfig, ProjectionHead, save_projection
from image2mood.models.resolve import resolve_model
from training.data import DataError, Dataset, Pair, split
from training.features import FeatureCache
from training.metrics import MetricsLog

MODES = ("image-caption", "text-bridge")
_caption, _caption_key, _image_key = attrgetter("caption"), attrgetter("caption_key"), attrgetter("image_key")
KS = (1, 5, 10)
TEXT_BATCH = 128  # captions per encoder call while caching (images go ``batch_size`` at a time)


@dataclass(frozen=True)
class HeadConfig:
    epochs: int = 30
    batch_size: int = 256
    lr: float = 1e-3
    weight_decay: float = 1e-4
    hidden: int = 1024  # 0: a single linear layer
    noise: float = 0.0  # std of the Gaussian noise added to each input while training
    centre: bool = False  # subtract the training inputs' mean (folded into the saved head)
    temperature: float = 0.07  # initial InfoNCE temperature (learned from there)
    seed: int = 0


@dataclass
class Features:
    """Inputs and targets row by row; ``groups`` says which rows share a caption."""

    inputs: np.ndarray
    targets: np.ndarray
    groups: np.ndarray

    def __len__(self) -> int:
        return len(self.inputs)


@dataclass
class Trained:
    head: ProjectionHead
    best_epoch: int
    best: dict[str, float]
    history: list[dict[str, float]] = field(default_factory=list)
    valid: Features | None = None  # the validation features (set when trained from a table)


def recall_at(predicted: torch.Tensor, targets: torch.Tensor, groups: torch.Tensor,
              ks: tuple[int, ...] = KS) -> dict[str, float]:
    """Recall@k of each predicted vector retrieving its own caption among all ``targets``."""
    scores = predicted @ targets.T
    top = scores.topk(min(max(ks), len(targets)), dim=1).indices
    hit = groups[top] == groups[:, None]
    return {f"R@{k}": float(hit[:, :k].any(dim=1).float().mean()) for k in ks}


def info_nce(predicted: torch.Tensor, targets: torch.Tensor, groups: torch.Tensor,
             log_scale: torch.Tensor) -> torch.Tensor:
    """Symmetric InfoNCE; other rows with the same caption are masked out of the negatives."""
    logits = log_scale.exp() * predicted @ targets.T
    same = (groups[:, None] == groups[None, :]) & ~torch.eye(len(groups), dtype=torch.bool, device=groups.device)
    logits = logits.masked_fill(same, float("-inf"))
    labels = torch.arange(len(groups), device=groups.device)
    return (nn.functional.cross_entropy(logits, labels) + nn.functional.cross_entropy(logits.T, labels)) / 2


def train_head(train: Features, valid: Features, config: HeadConfig, log: MetricsLog | None = None,
               progress: bool = True) -> Trained:
    """Train a head on ``train``, choose its best epoch on ``valid``; returns the best head (centring folded in)."""
    torch.manual_seed(config.seed)
    generator = torch.Generator().manual_seed(config.seed)
    x, y, g = (torch.from_numpy(a) for a in (train.inputs, train.targets, train.groups))
    vx, vy, vg = (torch.from_numpy(a) for a in (valid.inputs, valid.targets, valid.groups))
    mean = x.mean(dim=0) if config.centre else torch.zeros(x.shape[1])
    head = ProjectionHead(ProjectionConfig(in_dim=x.shape[1], out_dim=y.shape[1], hidden=config.hidden))
    log_scale = nn.Parameter(torch.tensor(math.log(1 / config.temperature)))
    optimiser = torch.optim.AdamW([*head.parameters(), log_scale], lr=config.lr, weight_decay=config.weight_decay)

    def evaluate() -> dict[str, float]:
        head.eval()
        with torch.no_grad():
            predicted = head(vx - mean)
            loss = info_nce(predicted, vy, vg, log_scale)
            return {"valid_loss": float(loss), **recall_at(predicted, vy, vg)}

    best, best_state, best_epoch = evaluate(), copy.deepcopy(head.state_dict()), 0
    history = [{"epoch": 0, **best}]
    if log:
        log.write(epoch=0, **best)
    bar = tqdm(range(1, config.epochs + 1), desc="head epochs", unit="epoch", disable=not progress,
               mininterval=1, dynamic_ncols=True)
    for epoch in bar:
        head.train()
        total, batches = 0.0, 0
        for index in torch.randperm(len(x), generator=generator).split(config.batch_size):
            if len(index) < 2:
                continue
            inputs = x[index] - mean
            if config.noise:
                inputs = inputs + config.noise * torch.randn(inputs.shape, generator=generator)
            loss = info_nce(head(inputs), y[index], g[index], log_scale)
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
            with torch.no_grad():
                log_scale.clamp_(0, math.log(100))
            total, batches = total + loss.item(), batches + 1
        scores = {"train_loss": total / max(batches, 1), **evaluate(), "temperature": 1 / log_scale.exp().item()}
        history.append({"epoch": epoch, **scores})
        if log:
            log.write(epoch=epoch, **scores)
        bar.set_postfix(loss=f"{scores['train_loss']:.3f}", valid=f"{scores['valid_loss']:.3f}",
                        r1=f"{scores['R@1']:.2f}", r10=f"{scores['R@10']:.2f}")
        if _better(scores, best):
            best, best_state, best_epoch = scores, copy.deepcopy(head.state_dict()), epoch
    head.load_state_dict(best_state)
    _fold_centring(head, mean)
    return Trained(head=head.eval(), best_epoch=best_epoch, best=best, history=history)


def _better(scores: dict[str, float], best: dict[str, float]) -> bool:
    recall, best_recall = (sum(s[f"R@{k}"] for k in KS) for s in (scores, best))
    return recall > best_recall or (recall == best_recall and scores["valid_loss"] < best["valid_loss"])


def _fold_centring(head: ProjectionHead, mean: torch.Tensor) -> None:
    """Make ``head(x)`` compute what the trained head did on ``x - mean``: W(x - m) + b = Wx + (b - Wm)."""
    first = head.net[0] if isinstance(head.net, nn.Sequential) else head.net
    with torch.no_grad():
        first.bias -= first.weight @ mean


def train_projection(dataset: Dataset, settings: Settings, out: Path, *, mode: str, cache: Path, config: HeadConfig,
                     log: MetricsLog | None = None, batch_size: int = 32, progress: bool = True,
                     on_ray: bool = False, ray_address: str | None = None) -> Trained:
    """From a table to a checkpoint: cache the configured models' vectors (``on_ray``: on a Ray cluster,
    :mod:`training.ray_features`), split, train, save ``out``."""
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, not {mode!r}")
    clip_model, clap_model = (resolve_model(kind, settings.model_spec(kind)) for kind in ("clip", "clap"))
    clip = clap = None
    if not on_ray:
        clip, clap = factory.image_encoder(settings), factory.clap_encoder(settings)

    def fill(features: FeatureCache, kind: str, key, load, encode, batch: int, desc: str) -> None:
        if on_ray:
            from training.ray_features import fill_on_ray

            fill_on_ray(features, dataset, dataset.pairs, key, kind, settings, batch, ray_address)
        else:
            features.fill(dataset.pairs, key, load, encode(), batch, desc)

    targets = FeatureCache(cache / "clap-text.npz", model_fingerprint(clap_model), clap_model.spec)
    fill(targets, "clap-text", _caption_key, _caption, lambda: clap.encode_text, TEXT_BATCH, "CLAP captions")
    if mode == "image-caption":
        inputs = FeatureCache(cache / "clip-image.npz", model_fingerprint(clip_model), clip_model.spec)
        input_key = _image_key
        fill(inputs, "clip-image", input_key, dataset.image, lambda: clip.encode_images, batch_size, "CLIP images")
    else:
        inputs = FeatureCache(cache / "clip-text.npz", model_fingerprint(clip_model), clip_model.spec)
        input_key = _caption_key
        fill(inputs, "clip-text", input_key, _caption, lambda: clip.encode_text, TEXT_BATCH, "CLIP captions")
    train, valid = ([p for p in part if input_key(p) in inputs.vectors] for part in split(dataset.pairs, config.seed))
    if not train or not valid:
        raise DataError(f"{dataset.report()}: too few usable pairs left to train and validate on")
    groups: dict[str, int] = {}

    def features(pairs: list[Pair]) -> Features:
        ids = np.array([groups.setdefault(pair.caption, len(groups)) for pair in pairs])
        return Features(inputs.matrix([input_key(p) for p in pairs]), targets.matrix([_caption_key(p) for p in pairs]), ids)

    trained = train_head(features(train), features(valid), config, log, progress)
    trained.valid = features(valid)
    save_projection(out, trained.head, clip_model, clap_model)
    return trained

