"""BLIP fine-tuning: ``BlipForConditionalGeneration`` on image–caption pairs, caption cross-entropy.

AdamW with gradient accumulation, bf16 autocast where the device supports it, the GPU when there is
one, ``freeze_vision`` to train the text decoder alone. The output folder is a complete captioner
(weights, config, processor), loadable as ``IMAGE2MOOD_BLIP_MODEL=DIR``; beside it
``training-state.pt`` holds the step and the optimiser state, so a resumed run continues from the
saved step. The data order is fixed by the seed and the epoch, so the step alone says where to resume.

BLIP's English WordPiece vocabulary maps most non-Latin words (Hangul among them) to ``[UNK]``:
:func:`token_coverage` measures that for a caption column, :func:`add_missing_tokens` adds the
missing words as tokens (the embeddings are resized to match).
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from tokenizers import AddedToken

import image2mood.models._torchvision  # noqa: F401  (the torchvision guard, before transformers' BLIP imports it)
from tqdm import tqdm
from transformers import BlipForConditionalGeneration, BlipProcessor  # noqa: E402

from image2mood.errors import Image2MoodError
from training.data import Dataset, Pair
from training.metrics import MetricsLog

STATE_FILE = "training-state.pt"


class ResumeError(Image2MoodError):
    """``--resume`` was asked for but the output folder holds no usable training state."""


@dataclass(frozen=True)
class BlipTrainingConfig:
    epochs: int = 3
    max_steps: int | None = None  # optimiser steps; stops at whichever of epochs/max_steps comes first
    batch_size: int = 8
    grad_accum: int = 1
    lr: float = 5e-5
    weight_decay: float = 0.01
    freeze_vision: bool = False
    max_length: int = 40  # caption tokens
    save_every: int = 500  # steps between checkpoints (and one at the end)
    samples: int = 3  # sample captions shown per epoch
    seed: int = 0


@dataclass(frozen=True)
class Coverage:
    """How much of a caption column a tokenizer spells with known tokens."""

    tokens: int
    unknown: int
    missing_words: Counter

    @property
    def fraction(self) -> float:
        return 1 - self.unknown / self.tokens if self.tokens else 1.0

    def report(self, column: str) -> str:
        line = (f"tokenizer coverage of {column}: {self.fraction:.1%} of {self.tokens} tokens known "
                f"({self.unknown} [UNK])")
        if self.missing_words:
            common = ", ".join(word for word, _ in self.missing_words.most_common(8))
            line += f"; {len(self.missing_words)} words it cannot spell, e.g. {common}"
        return line


def token_coverage(tokenizer, captions: list[str]) -> Coverage:
    """Count the caption tokens that are ``[UNK]``, and the words behind them."""
    unk = tokenizer.unk_token_id
    ids = tokenizer(captions, add_special_tokens=False)["input_ids"]
    tokens, unknown = sum(map(len, ids)), sum(row.count(unk) for row in ids)
    words = Counter(word for caption in captions for word in caption.split())
    spelled = tokenizer(list(words), add_special_tokens=False)["input_ids"]
    missing = Counter({word: words[word] for word, row in zip(words, spelled) if unk in row})
    return Coverage(tokens=tokens, unknown=unknown, missing_words=missing)


def add_missing_tokens(tokenizer, model: BlipForConditionalGeneration, coverage: Coverage, limit: int) -> int:
    """Add the ``limit`` most frequent missing words as whole-word tokens and resize the model's
    embeddings (new rows start at the mean of the old ones); returns how many were added.

    The tokens match the caption text as written (not the tokenizer's normalised form: an uncased
    BERT normaliser decomposes Hangul into jamo), so they decode back to the same characters."""
    words = [word for word, _ in coverage.missing_words.most_common(limit)]
    added = tokenizer.add_tokens([AddedToken(word, single_word=True, normalized=False) for word in words])
    if added:
        model.resize_token_embeddings(len(tokenizer), mean_resizing=True)
        model.config.text_config.vocab_size = len(tokenizer)
    return added


def set_image_size(model: BlipForConditionalGeneration, processor: BlipProcessor, size: int) -> None:
    """Make ``size`` the model's own image size: position embeddings interpolated once, config and
    processor updated, so training and later captioning both run at this size."""
    embeddings = model.vision_model.embeddings
    if size == embeddings.image_size:
        return
    if size % embeddings.patch_size:
        raise ValueError(f"--image-size must be a multiple of the patch size {embeddings.patch_size}")
    with torch.no_grad():
        dummy = torch.zeros(1, (size // embeddings.patch_size) ** 2 + 1, embeddings.embed_dim)
        positions = embeddings.interpolate_pos_encoding(dummy, size, size)
    embeddings.position_embedding = torch.nn.Parameter(positions.clone())
    embeddings.image_size = size
    embeddings.num_patches = positions.shape[1] - 1
    embeddings.num_positions = positions.shape[1]
    model.config.vision_config.image_size = size
    processor.image_processor.size = {"height": size, "width": size}


def autocast_dtype(device: torch.device) -> torch.dtype | None:
    """bf16 where the device computes it natively (recent GPUs; CPUs with AVX-512 BF16 or AMX), else None."""
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else None
    native = getattr(torch.cpu, "_is_avx512_bf16_supported", lambda: False)() or \
        getattr(torch.cpu, "_is_amx_tile_supported", lambda: False)()
    return torch.bfloat16 if native else None


class BlipTrainer:
    """Trains ``model`` on ``train`` (validating on ``valid``) and saves it into ``out``."""

    def __init__(self, model: BlipForConditionalGeneration, processor: BlipProcessor, dataset: Dataset,
                 train: list[Pair], valid: list[Pair], out: Path, config: BlipTrainingConfig,
                 device: torch.device, log: MetricsLog, bf16: bool | None = None, progress: bool = True) -> None:
        self.model, self.processor, self.dataset = model.to(device), processor, dataset
        self.train_pairs, self.valid_pairs, self.out, self.config = train, valid, out, config
        self.device, self.log, self.progress = device, log, progress
        self.dtype = autocast_dtype(device) if bf16 is None else (torch.bfloat16 if bf16 else None)
        if config.freeze_vision:
            model.vision_model.requires_grad_(False)
        trainable = [p for p in model.parameters() if p.requires_grad]
        self.optimiser = torch.optim.AdamW(trainable, lr=config.lr, weight_decay=config.weight_decay)
        self.step = 0
        self.batches_per_epoch = math.ceil(len(train) / config.batch_size)
        self.steps_per_epoch = math.ceil(self.batches_per_epoch / config.grad_accum)

    @property
    def total_steps(self) -> int:
        steps = self.config.epochs * self.steps_per_epoch
        return min(steps, self.config.max_steps) if self.config.max_steps else steps

    def resume(self) -> None:
        """Continue from the state saved in ``out`` (weights were loaded from there by the caller)."""
        path = self.out / STATE_FILE
        if not path.is_file():
            raise ResumeError(f"--resume: {self.out} holds no {STATE_FILE}; start without --resume")
        state = torch.load(path, map_location=self.device, weights_only=True)
        self.optimiser.load_state_dict(state["optimizer"])
        self.step = int(state["step"])

    def run(self) -> None:
        """Train until ``epochs`` or ``max_steps``; checkpoints every ``save_every`` steps and at the end."""
        config = self.config
        first_epoch, done = divmod(self.step, self.steps_per_epoch)  # where the data order resumes
        offset = done * config.grad_accum
        bar = tqdm(total=self.total_steps, initial=min(self.step, self.total_steps), desc="BLIP steps",
                   unit="step", disable=not self.progress, mininterval=1, dynamic_ncols=True)
        for epoch in range(first_epoch, config.epochs):
            order = torch.randperm(len(self.train_pairs), generator=torch.Generator().manual_seed(config.seed + epoch))
            batches = order.split(config.batch_size)
            losses: list[float] = []
            for number in range(offset, len(batches)):
                if self.step >= self.total_steps:
                    break
                loss = self._loss([self.train_pairs[i] for i in batches[number]])
                if loss is not None:
                    (loss / config.grad_accum).backward()
                    losses.append(loss.item())
                if (number + 1) % config.grad_accum == 0 or number + 1 == len(batches):
                    self.optimiser.step()
                    self.optimiser.zero_grad(set_to_none=True)
                    self.step += 1
                    bar.update(1)
                    if losses:
                        self.log.write(step=self.step, epoch=epoch + 1, train_loss=sum(losses) / len(losses))
                        bar.set_postfix(loss=f"{losses[-1]:.3f}")
                    losses = []
                    if self.step % config.save_every == 0:
                        self.save()
            offset = 0
            self._end_of_epoch(epoch + 1)
            if self.step >= self.total_steps:
                break
        bar.close()
        self.save()

    def save(self) -> None:
        self.out.mkdir(parents=True, exist_ok=True)
        self.model.save_pretrained(self.out)
        self.processor.save_pretrained(self.out)
        torch.save({"step": self.step, "optimizer": self.optimiser.state_dict(), "config": asdict(self.config)},
                   self.out / STATE_FILE)

    def _batch(self, pairs: list[Pair]) -> dict[str, torch.Tensor] | None:
        kept = [(image, pair.caption) for pair in pairs if (image := self.dataset.image(pair)) is not None]
        if not kept:
            return None
        images, captions = zip(*kept)
        inputs = self.processor(images=list(images), text=list(captions), padding=True, truncation=True,
                                max_length=self.config.max_length, return_tensors="pt")
        ids = inputs["input_ids"].clone()
        ids[:, 0] = self.model.config.text_config.bos_token_id  # the decoder starts from [DEC], as when captioning
        labels = ids.masked_fill(inputs["attention_mask"] == 0, -100)
        return {"pixel_values": inputs["pixel_values"].to(self.device), "input_ids": ids.to(self.device),
                "attention_mask": inputs["attention_mask"].to(self.device), "labels": labels.to(self.device)}

    def _loss(self, pairs: list[Pair]) -> torch.Tensor | None:
        batch = self._batch(pairs)
        if batch is None:
            return None
        self.model.train()
        with torch.autocast(self.device.type, dtype=self.dtype or torch.float32, enabled=self.dtype is not None):
            return self.model(**batch).loss

    @torch.no_grad()
    def _end_of_epoch(self, epoch: int) -> None:
        self.model.eval()
        losses = []
        for start in range(0, len(self.valid_pairs), self.config.batch_size):
            batch = self._batch(self.valid_pairs[start:start + self.config.batch_size])
            if batch is not None:
                with torch.autocast(self.device.type, dtype=self.dtype or torch.float32, enabled=self.dtype is not None):
                    losses.append(float(self.model(**batch).loss))
        samples = self.sample_captions(self.valid_pairs[: self.config.samples])
        valid_loss = sum(losses) / len(losses) if losses else None
        self.log.write(step=self.step, epoch=epoch, valid_loss=valid_loss, samples=samples)
        tqdm.write(f"epoch {epoch}: valid loss {valid_loss if valid_loss is None else round(valid_loss, 4)}")
        for sample in samples:
            tqdm.write(f"  {sample['caption']!r} → {sample['generated']!r}")

    @torch.no_grad()
    def sample_captions(self, pairs: list[Pair], max_new_tokens: int = 20) -> list[dict[str, str]]:
        """Greedy captions for ``pairs`` beside their reference captions."""
        kept = [(image, pair) for pair in pairs if (image := self.dataset.image(pair)) is not None]
        if not kept:
            return []
        self.model.eval()
        pixels = self.processor(images=[image for image, _ in kept], return_tensors="pt")["pixel_values"]
        ids = self.model.generate(pixel_values=pixels.to(self.device), max_new_tokens=max_new_tokens,
                                  do_sample=False, num_beams=1)
        texts = self.processor.batch_decode(ids, skip_special_tokens=True)
        return [{"caption": pair.caption, "generated": text.strip()} for (_, pair), text in zip(kept, texts)]
