"""`image2mood train projection` and `image2mood train blip`."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import click

from image2mood.config import Settings

_data = click.argument("data", required=False, type=click.Path(exists=True, path_type=Path))
_images = click.option("--images", "images", type=click.Path(exists=True, file_okay=False, path_type=Path),
                       help="Folder the table's image paths are relative to.")
_caption_column = click.option("--caption-column", default=None,
                               help="Caption column (default: caption, or eng_caption in LAION-COCO-NLLB tables).")
_caption_language = click.option("--caption-language", default=None, metavar="CODE",
                                 help="Take the caption in this language from a LAION-COCO-NLLB translation "
                                      "list (e.g. kor_Hang).")
_image_column = click.option("--image-column", default="image", show_default=True,
                             help="Image column: a path under --images, or image bytes (Parquet).")
_seed = click.option("--seed", default=0, show_default=True, help="Seed of the 8:2 train/valid split and of training.")
_limit = click.option("--limit", default=None, type=click.IntRange(2),
                      help="Use only the first N usable pairs (a quick trial run).")
_device = click.option("--device", default=None, help="torch device (default: cuda when present, else IMAGE2MOOD_DEVICE).")


def _device_for(settings: Settings, device: str | None) -> str:
    import torch

    return device or ("cuda" if torch.cuda.is_available() else settings.device)


def _read(data: Path, images: Path | None, caption_column: str | None, caption_language: str | None,
          image_column: str, limit: int | None, need_images: bool = True, say=click.echo):
    from training.data import read_pairs

    dataset = read_pairs(data, images=images, caption_column=caption_column, caption_language=caption_language,
                         image_column=image_column, need_images=need_images)
    dataset.pairs = dataset.pairs[:limit]
    say(dataset.report(), err=True)
    return dataset


def _launch_workers(processes: int) -> None:
    """Run this same command in ``processes`` workers through torchrun (one machine) and exit with its status.
    The workers see torchrun's ``LOCAL_RANK`` and train; ``accelerate launch`` is not used here because
    its CLI imports timm, which imports torchvision before the project's guard can run."""
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={processes}",
               "-m", "image2mood_cli.main", *sys.argv[1:]]
    click.echo(f"starting {processes} training processes: {' '.join(command[:5])} ...", err=True)
    raise SystemExit(subprocess.run(command, check=False).returncode)


@click.group()
def train() -> None:
    """Train the projection head or fine-tune BLIP on image–caption pairs."""


@train.command()
@_data
@_images
@click.option("--out", required=True, type=click.Path(dir_okay=False, path_type=Path), help="Checkpoint to write.")
@click.option("--mode", type=click.Choice(["image-caption", "text-bridge"]), default=None,
              help="image-caption: CLIP image → CLAP text of its caption (default with DATA); text-bridge: CLIP "
                   "text → CLAP text, no images (default without DATA: the shipped caption corpus).")
@_caption_column
@_caption_language
@_image_column
@click.option("--epochs", default=30, show_default=True, type=click.IntRange(1))
@click.option("--batch-size", default=256, show_default=True, type=click.IntRange(2))
@click.option("--lr", default=1e-3, show_default=True, type=click.FloatRange(0, min_open=True))
@click.option("--hidden", default=1024, show_default=True, type=click.IntRange(0),
              help="Hidden width of the head (0: one linear layer).")
@click.option("--noise", default=None, type=click.FloatRange(0),
              help="Std of the Gaussian noise on the inputs while training (default: 0.04 text-bridge, 0 image-caption).")
@click.option("--cache", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Feature cache folder (default: OUT's name + '-features' beside it).")
@click.option("--ray", "on_ray", is_flag=True,
              help="Compute the features on Ray Data: a pool of encoder actors (a GPU each where there are GPUs).")
@click.option("--address", default=None, metavar="ADDRESS",
              help="With --ray: the Ray cluster to join ('auto', or host:port; default: start a local one).")
@_limit
@_seed
@_device
@click.pass_obj
def projection(settings: Settings, data: Path | None, images: Path | None, out: Path, mode: str | None,
               caption_column: str | None, caption_language: str | None, image_column: str, epochs: int,
               batch_size: int, lr: float, hidden: int, noise: float | None, cache: Path | None, on_ray: bool,
               address: str | None, limit: int | None, seed: int, device: str | None) -> None:
    """Train the head that maps CLIP image vectors into CLAP's space, from DATA: an image–caption table
    (a Parquet, JSONL or CSV file, or a folder of them) or an img2dataset output folder."""
    from training.corpus import caption_corpus
    from training.data import text_pairs
    from training.metrics import MetricsLog
    from training.projection import HeadConfig, train_projection

    mode = mode or ("image-caption" if data else "text-bridge")
    if mode == "image-caption" and data is None:
        raise click.UsageError("--mode image-caption needs DATA, a table of images and captions")
    if data is None:
        dataset = text_pairs(caption_corpus()[:limit], "the shipped caption corpus")
        click.echo(dataset.report(), err=True)
    else:
        dataset = _read(data, images, caption_column, caption_language, image_column, limit, mode == "image-caption")
    settings = settings.model_copy(update={"device": _device_for(settings, device)})
    noise = noise if noise is not None else (0.04 if mode == "text-bridge" else 0.0)
    config = HeadConfig(epochs=epochs, batch_size=batch_size, lr=lr, hidden=hidden, noise=noise,
                        centre=mode == "text-bridge", seed=seed)
    log = MetricsLog(out.with_name(out.stem + ".metrics.jsonl"))
    if address and not on_ray:
        raise click.UsageError("--address names a Ray cluster: give --ray too")
    trained = train_projection(dataset, settings, out, mode=mode, config=config, log=log,
                               cache=cache or out.with_name(out.stem + "-features"), on_ray=on_ray,
                               ray_address=address)
    if dataset.broken:
        click.echo(dataset.report(), err=True)
    plot = log.plot(out.with_name(out.stem + ".metrics.png"), x="epoch")
    untrained, best = trained.history[0], trained.best
    recall = lambda scores: " ".join(f"R@{k} {scores[f'R@{k}']:.3f}" for k in (1, 5, 10))  # noqa: E731
    click.echo(f"best epoch {trained.best_epoch}: valid {recall(best)} (untrained: {recall(untrained)})")
    click.echo(f"wrote {out} (metrics {log.path}, plot {plot}); use it with IMAGE2MOOD_PROJECTION={out}")


@train.command()
@click.argument("data", type=click.Path(exists=True, path_type=Path))
@_images
@click.option("--out", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Model folder to write (loadable as IMAGE2MOOD_BLIP_MODEL).")
@_caption_column
@_caption_language
@_image_column
@click.option("--epochs", default=3, show_default=True, type=click.IntRange(1))
@click.option("--max-steps", default=None, type=click.IntRange(1), help="Stop after this many optimiser steps.")
@click.option("--batch-size", default=8, show_default=True, type=click.IntRange(1))
@click.option("--grad-accum", default=1, show_default=True, type=click.IntRange(1),
              help="Batches whose gradients are summed per optimiser step.")
@click.option("--lr", default=5e-5, show_default=True, type=click.FloatRange(0, min_open=True))
@click.option("--freeze-vision", is_flag=True, help="Train only the text decoder (much less work on a CPU).")
@click.option("--image-size", default="224", show_default=True,
              help="Image side the model trains (and later captions) at; 'model' keeps the model's own.")
@click.option("--bf16/--no-bf16", default=None, help="bf16 autocast (default: where the device supports it).")
@click.option("--add-missing-tokens", is_flag=True,
              help="Add the caption words the tokenizer cannot spell as tokens and resize the embeddings.")
@click.option("--max-new-tokens", default=20000, show_default=True, type=click.IntRange(1),
              help="With --add-missing-tokens: the most frequent missing words to add.")
@click.option("--save-every", default=500, show_default=True, type=click.IntRange(1), help="Steps between checkpoints.")
@click.option("--resume", is_flag=True, help="Continue from the checkpoint in --out, from its saved step.")
@click.option("--processes", default=1, show_default=True, type=click.IntRange(1),
              help="Train on this many processes of this machine (DDP: one per GPU, or gloo on CPUs); "
                   "--batch-size is per process.")
@_limit
@_seed
@_device
@click.pass_obj
def blip(settings: Settings, data: Path, images: Path | None, out: Path, caption_column: str | None,
         caption_language: str | None, image_column: str, epochs: int, max_steps: int | None, batch_size: int,
         grad_accum: int, lr: float, freeze_vision: bool, image_size: str, bf16: bool | None,
         add_missing_tokens: bool, max_new_tokens: int, save_every: int, resume: bool, processes: int,
         limit: int | None, seed: int, device: str | None) -> None:
    """Fine-tune the BLIP captioner on DATA: an image–caption table (a file, or a folder of them) or
    an img2dataset output folder."""
    if processes > 1 and "LOCAL_RANK" not in os.environ:
        _launch_workers(processes)
    import torch

    from image2mood.captions import LANGUAGE_KEY
    from image2mood.models.loading import checked_tokenizer, load_or_explain
    from image2mood.models.resolve import ResolvedModel, resolve_model
    from training.blip import BlipForConditionalGeneration, BlipProcessor, BlipTrainer, BlipTrainingConfig
    from training.blip import add_missing_tokens as add_tokens, set_image_size, token_coverage
    from training.data import split
    from training.metrics import MetricsLog

    if settings.threads:
        torch.set_num_threads(settings.threads)
    if image_size != "model" and not image_size.isdigit():
        raise click.BadParameter("give a number of pixels or 'model'", param_hint="--image-size")
    main = int(os.environ.get("RANK", "0")) == 0  # under torchrun, only the first process reports

    def say(message: str, err: bool = False) -> None:
        if main:
            click.echo(message, err=err)

    dataset = _read(data, images, caption_column, caption_language, image_column, limit, say=say)
    train_pairs, valid_pairs = split(dataset.pairs, seed)
    source = ResolvedModel("blip", str(out), out) if resume else resolve_model("blip", settings.model_spec("blip"))
    say(f"loading BLIP from {source.spec} ...", err=True)
    model = load_or_explain(source, lambda: BlipForConditionalGeneration.from_pretrained(source.folder))
    processor = load_or_explain(source, lambda: BlipProcessor.from_pretrained(source.folder))
    tokenizer = checked_tokenizer(source, processor.tokenizer, model.config.text_config.vocab_size)
    if caption_language:  # the language its captions will be in: image2mood translates them for CLAP
        setattr(model.config, LANGUAGE_KEY, caption_language)

    column = f"captions[{caption_language}]" if caption_language else (caption_column or "the caption column")
    coverage = token_coverage(tokenizer, [pair.caption for pair in train_pairs])
    say(coverage.report(column), err=True)
    if coverage.missing_words and not add_missing_tokens:
        say("  fix: --add-missing-tokens adds those words as tokens (the embeddings grow to match), or "
                   "start from a BLIP whose tokenizer covers the language (IMAGE2MOOD_BLIP_MODEL)", err=True)
    if add_missing_tokens and coverage.missing_words:
        added = add_tokens(tokenizer, model, coverage, max_new_tokens)
        after = token_coverage(tokenizer, [pair.caption for pair in train_pairs])
        say(f"added {added} tokens (vocabulary now {len(tokenizer)}); {after.report(column)}", err=True)
    if image_size != "model":
        set_image_size(model, processor, int(image_size))

    config = BlipTrainingConfig(epochs=epochs, max_steps=max_steps, batch_size=batch_size, grad_accum=grad_accum,
                                lr=lr, freeze_vision=freeze_vision, save_every=save_every, seed=seed)
    log = MetricsLog(out / "metrics.jsonl", append=resume or not main)
    trainer = BlipTrainer(model, processor, dataset, train_pairs, valid_pairs, out, config,
                          torch.device(_device_for(settings, device)), log, bf16=bf16)
    try:
        if resume:
            trainer.resume()
            say(f"resuming at step {trainer.step} of {trainer.total_steps}", err=True)
        say(f"training on {len(train_pairs)} pairs, validating on {len(valid_pairs)} ({trainer.processes} × "
            f"{trainer.device.type}, {'bf16' if trainer.dtype else 'fp32'}"
            f"{', vision frozen' if freeze_vision else ''})", err=True)
        say(f"global batch {trainer.global_batch} pairs a step ({batch_size} per process × {grad_accum} "
            f"accumulated × {trainer.processes} processes), learning rate {lr:g}", err=True)
        trainer.run()
    finally:
        trainer.close()
    if dataset.broken:
        say(dataset.report(), err=True)
    if main:
        plot = log.plot(out / "metrics.png", x="step")
        click.echo(f"wrote {out} at step {trainer.step} (metrics {log.path}, plot {plot}); "
                   f"use it with IMAGE2MOOD_BLIP_MODEL={out}")
