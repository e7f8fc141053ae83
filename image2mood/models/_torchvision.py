"""Let torchvision's Python half import beside the CPU torch wheel.

PyPI's torchvision 0.28 is a CUDA build; beside the CPU torch 2.13 wheel its compiled operators do
not register and ``import torchvision`` dies on ``operator torchvision::nms does not exist``. open_clip
and transformers' image models import torchvision, so before they load we declare the two operator
schemas its import checks. The transforms and model definitions we use then work; the compiled ops
(nms, roi_align) stay unavailable, and image2mood does not use them. Where torchvision's own ops
load (a CPU torchvision, or CUDA torch) this does nothing.

Importing this module applies the guard: every module that imports transformers or open_clip imports
it first. It also turns off transformers' weight-loading progress bars (the CLI draws its own).
"""

from __future__ import annotations

import torch
from transformers.utils import logging as transformers_logging

_SCHEMAS = (
    "nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
    "qnms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
)
_library: torch.library.Library | None = None


def _torchvision_ops_load() -> bool:
    import sys

    try:
        import torchvision  # noqa: F401
    except (RuntimeError, ImportError, AttributeError):
        for name in [m for m in sys.modules if m == "torchvision" or m.startswith("torchvision.")]:
            del sys.modules[name]  # drop the half-imported package so the next import starts clean
        return False
    return True


def ensure_torchvision_importable() -> None:
    """Declare torchvision's operator schemas when its compiled library cannot."""
    global _library
    if _library is not None or hasattr(torch.ops.torchvision, "nms"):
        return
    if _torchvision_ops_load():
        return
    _library = torch.library.Library("torchvision", "DEF")
    for schema in _SCHEMAS:
        _library.define(schema)


ensure_torchvision_importable()
transformers_logging.disable_progress_bar()
