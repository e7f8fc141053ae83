"""MTCNN face detection in plain torch: P-Net over an image pyramid, then R-Net and O-Net refine.

The three networks load facenet-pytorch's trained state dicts (pnet.pt, rnet.pt, onet.pt). The
pyramid, the box regression and the non-maximum suppression are written here in torch, since
torchvision's compiled operators do not load beside the CPU torch. The steps and constants follow
the MTCNN paper (Zhang et al., 2016) as facenet-pytorch implements it.
"""

from __future__ import annotations

import pickle
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

from image2mood.errors import ModelLoadError
from image2mood.faces.fetch import FIX

THRESHOLDS = (0.6, 0.7, 0.7)  # face probability each stage needs
PYRAMID_FACTOR = 0.709  # each pyramid level is this much smaller (area halves every two levels)
CELL, STRIDE = 12, 2  # P-Net's window and step, in pixels of a pyramid level


class PNet(nn.Module):
    """Proposal network: a 12×12 fully convolutional face/not-face classifier with box offsets."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1, self.prelu1 = nn.Conv2d(3, 10, 3), nn.PReLU(10)
        self.conv2, self.prelu2 = nn.Conv2d(10, 16, 3), nn.PReLU(16)
        self.conv3, self.prelu3 = nn.Conv2d(16, 32, 3), nn.PReLU(32)
        self.conv4_1, self.conv4_2 = nn.Conv2d(32, 2, 1), nn.Conv2d(32, 4, 1)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = _pool2(self.prelu1(self.conv1(x)))
        x = self.prelu3(self.conv3(self.prelu2(self.conv2(x))))
        return self.conv4_2(x), F.softmax(self.conv4_1(x), dim=1)


class RNet(nn.Module):
    """Refinement network on 24×24 crops."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1, self.prelu1 = nn.Conv2d(3, 28, 3), nn.PReLU(28)
        self.pool1 = nn.MaxPool2d(3, 2, ceil_mode=True)
        self.conv2, self.prelu2 = nn.Conv2d(28, 48, 3), nn.PReLU(48)
        self.pool2 = nn.MaxPool2d(3, 2, ceil_mode=True)
        self.conv3, self.prelu3 = nn.Conv2d(48, 64, 2), nn.PReLU(64)
        self.dense4, self.prelu4 = nn.Linear(576, 128), nn.PReLU(128)
        self.dense5_1, self.dense5_2 = nn.Linear(128, 2), nn.Linear(128, 4)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.pool1(self.prelu1(self.conv1(x)))
        x = self.pool2(self.prelu2(self.conv2(x)))
        x = self.prelu3(self.conv3(x)).permute(0, 3, 2, 1).flatten(1)  # the trained (W, H, C) order
        x = self.prelu4(self.dense4(x))
        return self.dense5_2(x), F.softmax(self.dense5_1(x), dim=1)


class ONet(nn.Module):
    """Output network on 48×48 crops: face probability, box offsets and five landmarks."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1, self.prelu1 = nn.Conv2d(3, 32, 3), nn.PReLU(32)
        self.pool1 = nn.MaxPool2d(3, 2, ceil_mode=True)
        self.conv2, self.prelu2 = nn.Conv2d(32, 64, 3), nn.PReLU(64)
        self.pool2 = nn.MaxPool2d(3, 2, ceil_mode=True)
        self.conv3, self.prelu3 = nn.Conv2d(64, 64, 3), nn.PReLU(64)
        self.pool3 = nn.MaxPool2d(2, 2, ceil_mode=True)
        self.conv4, self.prelu4 = nn.Conv2d(64, 128, 2), nn.PReLU(128)
        self.dense5, self.prelu5 = nn.Linear(1152, 256), nn.PReLU(256)
        self.dense6_1, self.dense6_2, self.dense6_3 = nn.Linear(256, 2), nn.Linear(256, 4), nn.Linear(256, 10)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        x = self.pool1(self.prelu1(self.conv1(x)))
        x = self.pool2(self.prelu2(self.conv2(x)))
        x = self.pool3(self.prelu3(self.conv3(x)))
        x = self.prelu4(self.conv4(x)).permute(0, 3, 2, 1).flatten(1)
        x = self.prelu5(self.dense5(x))
        return self.dense6_2(x), self.dense6_3(x), F.softmax(self.dense6_1(x), dim=1)


@dataclass(frozen=True)
class DetectedFace:
    """One face: its box (x1, y1, x2, y2), O-Net's face probability and five landmarks (x, y):
    left eye, right eye, nose, left and right mouth corner (left/right as seen in the photo)."""

    box: tuple[float, float, float, float]
    score: float
    landmarks: tuple[tuple[float, float], ...]


def _load(net: nn.Module, path: Path) -> nn.Module:
    try:
        net.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
    except (OSError, RuntimeError, ValueError, pickle.UnpicklingError) as exc:
        raise ModelLoadError(f"{path} is not an MTCNN {type(net).__name__} state dict "
                             f"({str(exc).splitlines()[0]}): {FIX}") from exc
    return net.eval().to(memory_format=torch.channels_last)  # faster convolutions and pooling on CPU


def nms(boxes: torch.Tensor, scores: torch.Tensor, threshold: float, by_min: bool = False) -> torch.Tensor:
    """Greedy non-maximum suppression; the kept indices, best first.

    Overlap is intersection over union, or over the smaller box when ``by_min`` (O-Net's last pass,
    so a box inside a bigger one goes too). Boxes are inclusive pixel boxes (x1, y1, x2, y2).
    """
    if len(boxes) == 0:
        return torch.zeros(0, dtype=torch.long)
    order = torch.argsort(scores, descending=True)
    b = boxes[order]
    area = (b[:, 2] - b[:, 0] + 1) * (b[:, 3] - b[:, 1] + 1)
    w = (torch.minimum(b[:, None, 2], b[None, :, 2]) - torch.maximum(b[:, None, 0], b[None, :, 0]) + 1).clamp(min=0)
    h = (torch.minimum(b[:, None, 3], b[None, :, 3]) - torch.maximum(b[:, None, 1], b[None, :, 1]) + 1).clamp(min=0)
    inter = w * h
    base = torch.minimum(area[:, None], area[None, :]) if by_min else area[:, None] + area[None, :] - inter
    overlaps = (inter / base > threshold).numpy()
    suppressed = np.zeros(len(b), dtype=bool)
    kept = []
    for i in range(len(b)):
        if not suppressed[i]:
            kept.append(i)
            suppressed |= overlaps[i]
    return order[torch.tensor(kept, dtype=torch.long)]


def _square(boxes: torch.Tensor) -> torch.Tensor:
    """Boxes grown to squares about their centres (the next network sees square crops)."""
    w, h = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
    side = torch.maximum(w, h)
    x1, y1 = boxes[:, 0] + (w - side) / 2, boxes[:, 1] + (h - side) / 2
    return torch.stack([x1, y1, x1 + side, y1 + side], dim=1)


def _regress(boxes: torch.Tensor, offsets: torch.Tensor) -> torch.Tensor:
    """Apply a network's box offsets (fractions of the box's width and height)."""
    size = (boxes[:, 2:4] - boxes[:, 0:2] + 1).repeat(1, 2)
    return boxes + offsets * size


def _normalise(pixels: torch.Tensor) -> torch.Tensor:
    return (pixels - 127.5) * 0.0078125


def _tensor(images: list[Image.Image]) -> torch.Tensor:
    """RGB images of one size as a normalised (N, 3, H, W) batch."""
    pixels = np.stack([np.asarray(im) for im in images])
    batch = _normalise(torch.from_numpy(pixels).permute(0, 3, 1, 2).float())
    return batch.contiguous(memory_format=torch.channels_last)


def _crops(image: Image.Image, boxes: torch.Tensor, size: int) -> torch.Tensor:
    """Crops of ``image`` at inclusive pixel ``boxes`` (black outside the image), area-resized to ``size``."""
    return _tensor([image.crop((x1, y1, x2 + 1, y2 + 1)).resize((size, size), Image.Resampling.BOX)
                    for x1, y1, x2, y2 in boxes.trunc().int().tolist()])


def _pool2(x: torch.Tensor) -> torch.Tensor:
    """2×2/2 max-pool with ceil mode (an odd last row or column pools alone); on CPU about eight times
    faster than max_pool2d as the maximum of four strided views."""
    h, w = x.shape[2:]
    if h % 2 or w % 2:
        x = F.pad(x, (0, w % 2, 0, h % 2), value=float("-inf"))
    return torch.maximum(torch.maximum(x[:, :, 0::2, 0::2], x[:, :, 0::2, 1::2]),
                         torch.maximum(x[:, :, 1::2, 0::2], x[:, :, 1::2, 1::2]))


class MTCNN:
    """The three networks, loaded once from a folder; :meth:`detect` is safe to call from any thread."""

    def __init__(self, folder: Path) -> None:
        self.pnet = _load(PNet(), folder / "pnet.pt")
        self.rnet = _load(RNet(), folder / "rnet.pt")
        self.onet = _load(ONet(), folder / "onet.pt")

    @torch.inference_mode()
    def detect(self, image: Image.Image, min_size: float = 20) -> list[DetectedFace]:
        """Faces at least ``min_size`` pixels across in an RGB photo, best first."""
        image = image if image.mode == "RGB" else image.convert("RGB")
        boxes = self._propose(image, min_size)
        if len(boxes):
            boxes = self._refine(image, boxes)
        if not len(boxes):
            return []
        return self._output(image, boxes)

    def _propose(self, image: Image.Image, min_size: float) -> torch.Tensor:
        """P-Net over the pyramid: candidate boxes (x1, y1, x2, y2), squared, in image pixels."""
        width, height = image.size
        scale = CELL / max(min_size, CELL)
        first = image.resize((int(width * scale + 1), int(height * scale + 1)), Image.Resampling.BOX)
        found = []
        while min(height, width) * scale >= CELL:  # each level area-averaged from the first, the largest
            level = first.resize((int(width * scale + 1), int(height * scale + 1)), Image.Resampling.BOX)
            offsets, probs = self.pnet(_tensor([level]))
            ys, xs = torch.nonzero(probs[0, 1] >= THRESHOLDS[0], as_tuple=True)
            if len(ys):
                cells = torch.stack([xs, ys], dim=1).float()
                boxes = torch.cat([((STRIDE * cells + 1) / scale).floor(),
                                   ((STRIDE * cells + CELL) / scale).floor()], dim=1)
                score = probs[0, 1, ys, xs]
                regression = offsets[0][:, ys, xs].T
                keep = nms(boxes, score, 0.5)
                found.append(torch.cat([boxes[keep], score[keep, None], regression[keep]], dim=1))
            scale *= PYRAMID_FACTOR
        if not found:
            return torch.zeros(0, 4)
        candidates = torch.cat(found)
        candidates = candidates[nms(candidates[:, :4], candidates[:, 4], 0.7)]
        width_height = (candidates[:, 2:4] - candidates[:, 0:2]).repeat(1, 2)
        return _square(candidates[:, :4] + candidates[:, 5:9] * width_height)

    def _refine(self, image: Image.Image, boxes: torch.Tensor) -> torch.Tensor:
        """R-Net: keep the candidates it believes, regress and square them."""
        offsets, probs = self.rnet(_crops(image, boxes - 1, 24))  # MTCNN's boxes count pixels from 1
        passed = probs[:, 1] > THRESHOLDS[1]
        boxes, score, offsets = boxes[passed], probs[passed, 1], offsets[passed]
        keep = nms(boxes, score, 0.7)
        return _square(_regress(boxes[keep], offsets[keep]))

    def _output(self, image: Image.Image, boxes: torch.Tensor) -> list[DetectedFace]:
        """O-Net: final faces with their scores and landmarks."""
        offsets, points, probs = self.onet(_crops(image, boxes - 1, 48))
        passed = probs[:, 1] > THRESHOLDS[2]
        boxes, score, offsets, points = boxes[passed], probs[passed, 1], offsets[passed], points[passed]
        size = boxes[:, 2:4] - boxes[:, 0:2] + 1
        xs = size[:, 0:1] * points[:, :5] + boxes[:, 0:1] - 1
        ys = size[:, 1:2] * points[:, 5:] + boxes[:, 1:2] - 1
        boxes = _regress(boxes, offsets)
        keep = nms(boxes, score, 0.7, by_min=True)
        return [DetectedFace(box=tuple(float(v) - 1 for v in boxes[i]), score=float(score[i]),
                             landmarks=tuple((float(xs[i, k]), float(ys[i, k])) for k in range(5)))
                for i in keep.tolist()]
