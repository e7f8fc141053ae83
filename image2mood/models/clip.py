"""CLIP through open_clip: photos (and, for zero-shot prompts, texts) into CLIP's space."""

from __future__ import annotations

import image2mood.models._torchvision  # noqa: F401  (first: lets transformers and open_clip import torchvision)

from collections.abc import Sequence

import numpy as np
import open_clip
import torch
from PIL import Image

from image2mood.models.loading import load_or_explain
from image2mood.models.precision import Precision, uses_bf16
from image2mood.models.resolve import ResolvedModel
from image2mood.vectors import l2_normalise


class ImageEncoder:
    """An open_clip model loaded from a folder in the hub layout (``open_clip_config.json`` + weights)."""

    def __init__(self, resolved: ResolvedModel, device: str = "cpu", precision: Precision = "fp32") -> None:
        """``precision``: the image tower's (bf16 where fast halves its time; the text tower stays fp32)."""
        name = f"local-dir:{resolved.folder}"
        self.name = resolved.spec
        self.device = torch.device(device)
        model, _, self.preprocess = load_or_explain(
            resolved, lambda: open_clip.create_model_and_transforms(name, device=self.device)
        )
        self.model = model.eval()
        self.image_dtype = torch.bfloat16 if uses_bf16(precision, self.device) else torch.float32
        self.model.visual.to(self.image_dtype)
        self.tokenizer = load_or_explain(resolved, lambda: open_clip.get_tokenizer(name))

    @property
    def dim(self) -> int:
        return int(self.model.text_projection.shape[1]) if isinstance(
            self.model.text_projection, torch.Tensor) else int(self.model.text_projection.out_features)

    @torch.inference_mode()
    def encode_images(self, images: Sequence[Image.Image]) -> np.ndarray:
        """One L2-normalised CLIP vector per RGB image."""
        batch = torch.stack([self.preprocess(image) for image in images]).to(self.device, self.image_dtype)
        return l2_normalise(self.model.encode_image(batch).float().cpu().numpy())

    @torch.inference_mode()
    def encode_text(self, texts: Sequence[str]) -> np.ndarray:
        """One L2-normalised CLIP vector per text (zero-shot prompts)."""
        tokens = self.tokenizer(list(texts)).to(self.device)
        return l2_normalise(self.model.encode_text(tokens).float().cpu().numpy())
