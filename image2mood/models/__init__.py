"""Model loading: one resolver for every model spec, one small class per model family.

Importing this package (or :mod:`image2mood.models.resolve`) loads no torch: the modules that import
transformers or open_clip import :mod:`image2mood.models._torchvision` first.
"""
