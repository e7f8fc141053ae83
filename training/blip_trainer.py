"""The BLIP training loop, on one process or several (Hugging Face Accelerate: DDP on NCCL or gloo).

A step takes ``batch_size × grad_accum × processes`` pairs (the global batch) from the epoch's order
(fixed by the seed and the epoch, so the step alone says where to resume); each process takes its
contiguous slice of every micro-batch. The loss of a step is the mean cross-entropy over all caption
tokens of the global batch, whichever process or micro-batch holds them: each process backpropagates
its token sum scaled by ``processes / all tokens`` (DDP averages the gradients over the processes), so
N processes compute the step that one process computes on the whole global batch. Only the main
process writes the checkpoint (weights, processor, ``training-state.pt``) and the metrics.
"""

from __future__ import annotations

import math
from contextlib import nullcontext
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from accelerate import Accelerator
from tqdm import tqdm

import image2mood.models._torchvision  # noqa: F401  (the torchvision guard, before transformers' BLIP imports it)
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
    batch_size: int = 8  # per process
    grad_accum: int = 1
    lr: float = 5e-5
    weight_decay: float = 0.01
    freeze_vision: bool = False
    max_length: int = 40  # caption tokens
    save_every: int = 500  # steps between checkpoints (and one at the end)
    samples: int = 3  # sample captions shown per epoch
    seed: int = 0


def autocast_dtype(device: torch.device) -> torch.dtype | None:
    """bf16 where the device computes it natively (recent GPUs; CPUs with AVX-512 BF16 or AMX), else None."""
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else None
    native = getattr(torch.cpu, "_is_avx512_bf16_supported", lambda: False)() or \
        getattr(torch.cpu, "_is_amx_tile_supported", lambda: False)()
    return torch.bfloat16 if native else None


class BlipTrainer:
    """Trains ``model`` on ``train`` (validating on ``valid``) and saves it into ``out``. Under torchrun
    (or ``accelerate launch``) every process builds one with the same arguments."""

    def __init__(self, model: BlipForConditionalGeneration, processor: BlipProcessor, dataset: Dataset,
                 train: list[Pair], valid: list[Pair], out: Path, config: BlipTrainingConfig,
                 device: torch.device, log: MetricsLog, bf16: bool | None = None, progress: bool = True) -> None:
        self.accelerator = Accelerator(cpu=device.type != "cuda")
        self.device = self.accelerator.device
        self.rank, self.processes = self.accelerator.process_index, self.accelerator.num_processes
        self.is_main = self.accelerator.is_main_process
        self.processor, self.dataset, self.train_pairs, self.valid_pairs = processor, dataset, train, valid
        self.out, self.config, self.log, self.progress = out, config, log, progress and self.is_main
        self.dtype = autocast_dtype(self.device) if bf16 is None else (torch.bfloat16 if bf16 else None)
        if config.freeze_vision:
            model.vision_model.requires_grad_(False)
        model = model.to(self.device)
        trainable = [p for p in model.parameters() if p.requires_grad]
        optimiser = torch.optim.AdamW(trainable, lr=config.lr, weight_decay=config.weight_decay)
        self.wrapped, self.optimiser = self.accelerator.prepare(model, optimiser)
        self.model: BlipForConditionalGeneration = self.accelerator.unwrap_model(self.wrapped)
        self.step = self.saved_step = 0
        self.global_batch = config.batch_size * config.grad_accum * self.processes
        self.batches_per_epoch = math.ceil(len(train) / (config.batch_size * self.processes))
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
        state = torch.load(path, map_location="cpu", weights_only=True)  # the optimiser moves it to its device
        self.optimiser.load_state_dict(state["optimizer"])
        self.step = self.saved_step = int(state["step"])

    def run(self) -> None:
        """Train until ``epochs`` or ``max_steps``; checkpoints every ``save_every`` steps and at the end."""
        config = self.config
        first_epoch, done = divmod(self.step, self.steps_per_epoch)  # where the data order resumes
        bar = tqdm(total=self.total_steps, initial=min(self.step, self.total_steps), desc="BLIP steps",
                   unit="step", disable=not self.progress, mininterval=1, dynamic_ncols=True)
        for epoch in range(first_epoch, config.epochs):
            order = torch.randperm(len(self.train_pairs), generator=torch.Generator().manual_seed(config.seed + epoch))
            batches = order.split(config.batch_size * self.processes)
            for first in range(done * config.grad_accum, len(batches), config.grad_accum):
                if self.step >= self.total_steps:
                    break
                loss = self._step([[self.train_pairs[i] for i in b] for b in batches[first:first + config.grad_accum]])
                self.step += 1
                bar.update(1)
                if loss is not None:
                    self._write(step=self.step, epoch=epoch + 1, train_loss=loss)
                    bar.set_postfix(loss=f"{loss:.3f}")
                if self.step % config.save_every == 0:
                    self.save()
            done = 0
            self._end_of_epoch(epoch + 1)
            if self.step >= self.total_steps:
                break
        bar.close()
        if self.saved_step != self.step:
            self.save()

    def close(self) -> None:
        """Leave the process group, DDP's wrapper first. Never left, gloo's threads outlive the interpreter and
        abort the process ("terminate called without an active exception": one 2-process run in eight); left
        while the wrapper lives, the wrapper's reducer later ends the group holding the GIL, which gloo's
        threads wait for (a hang)."""
        self.wrapped = None
        self.accelerator.free_memory()
        self.accelerator.end_training()

    def _step(self, micro_batches: list[list[Pair]]) -> float | None:
        """One optimiser step on the global micro-batches; returns the step's loss (None: no usable pair)."""
        local = [self._batch(self._slice(pairs)) for pairs in micro_batches]
        tokens = sum(int(batch["tokens"]) for batch in local if batch)
        total = int(self._sum(float(tokens)).item())
        if total == 0:  # every image of the global batch was broken: all processes skip alike
            return None
        self.wrapped.train()
        loss_sum = 0.0
        for number, (pairs, batch) in enumerate(zip(micro_batches, local)):
            weight = self.processes / total
            if batch is None:  # this process's slice is empty or broken: a zero-weight pass keeps DDP in step
                batch, weight = self._batch(pairs[:1]) or self._any_batch(pairs), 0.0
            last = number == len(local) - 1
            with nullcontext() if last else self.accelerator.no_sync(self.wrapped):
                summed = self._token_loss(self.wrapped, batch)
                (summed * weight).backward()
            loss_sum += float(summed.detach()) if weight else 0.0
        self.optimiser.step()
        self.optimiser.zero_grad(set_to_none=True)
        return float(self._sum(loss_sum).item()) / total

    def _slice(self, pairs: list[Pair]) -> list[Pair]:
        """This process's contiguous share of a global micro-batch."""
        share = math.ceil(len(pairs) / self.processes)
        return pairs[self.rank * share:(self.rank + 1) * share]

    def _any_batch(self, pairs: list[Pair]) -> dict[str, torch.Tensor]:
        for pair in pairs:
            if batch := self._batch([pair]):
                return batch
        return next(batch for pair in self.train_pairs if (batch := self._batch([pair])))

    def _sum(self, value: float) -> torch.Tensor:
        tensor = torch.tensor([value], dtype=torch.float64, device=self.device)
        return self.accelerator.reduce(tensor, reduction="sum") if self.processes > 1 else tensor

    def _token_loss(self, model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """The sum of the caption tokens' cross-entropy (BLIP's own loss before its mean: shifted, smoothed)."""
        with torch.autocast(self.device.type, dtype=self.dtype or torch.float32, enabled=self.dtype is not None):
            logits = model(pixel_values=batch["pixel_values"], input_ids=batch["input_ids"],
                           attention_mask=batch["attention_mask"]).logits
        labels = batch["labels"][:, 1:]
        return torch.nn.functional.cross_entropy(
            logits[:, :-1].float().reshape(-1, logits.shape[-1]), labels.reshape(-1), ignore_index=-100,
            reduction="sum", label_smoothing=self.model.text_decoder.label_smoothing)

    def loss(self, pairs: list[Pair]) -> torch.Tensor | None:
        """The mean token loss of ``pairs`` on this process (None when none of their images loads)."""
        batch = self._batch(pairs)
        return None if batch is None else self._token_loss(self.wrapped, batch) / batch["tokens"]

    def save(self) -> None:
        """Write the checkpoint from the main process; the others wait until it is written."""
        if self.is_main:
            self.out.mkdir(parents=True, exist_ok=True)
            self.model.save_pretrained(self.out)
            self.processor.save_pretrained(self.out)
            state = {"step": self.step, "optimizer": self.optimiser.state_dict(), "config": asdict(self.config),
                     "processes": self.processes}
            partial = self.out / (STATE_FILE + ".partial")
            torch.save(state, partial)
            partial.replace(self.out / STATE_FILE)  # the state says which step the weights beside it are
            self.log.write(step=self.step, checkpoint=str(self.out))
        self.saved_step = self.step
        self.accelerator.wait_for_everyone()

    def _write(self, **record) -> None:
        if self.is_main:
            self.log.write(**record)

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
                "attention_mask": inputs["attention_mask"].to(self.device), "labels": labels.to(self.device),
                "tokens": (labels[:, 1:] != -100).sum()}

    @torch.no_grad()
    def _end_of_epoch(self, epoch: int) -> None:
        """The valid loss over all processes' shares of the valid pairs; sample captions from the main one."""
        self.model.eval()
        loss_sum, tokens = 0.0, 0
        mine = self.valid_pairs[self.rank::self.processes]
        for start in range(0, len(mine), self.config.batch_size):
            batch = self._batch(mine[start:start + self.config.batch_size])
            if batch is not None:
                loss_sum, tokens = loss_sum + float(self._token_loss(self.model, batch)), tokens + int(batch["tokens"])
        loss_sum, tokens = float(self._sum(loss_sum).item()), int(self._sum(float(tokens)).item())
        valid_loss = loss_sum / tokens if tokens else None
        if not self.is_main:
            return
        samples = self.sample_captions(self.valid_pairs[: self.config.samples])
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
