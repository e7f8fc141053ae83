"""Model loading: one resolver for every model spec, one small class per model family."""

from transformers.utils import logging as _transformers_logging

from image2mood.models._torchvision import ensure_torchvision_importable

ensure_torchvision_importable()
_transformers_logging.disable_progress_bar()  # the CLI draws its own progress; weight-loading bars are noise
