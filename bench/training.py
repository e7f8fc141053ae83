# ruff: noqa: E402  (imports follow the sys.path fix below)
"""Training cost with full-size random-weight models: run by hand, not by the tests.

Measures, through the trainers' own code, seconds per 1,000 image–caption pairs for

- feature caching: CLIP ViT-B/32 images (640×480 JPEGs through the product's photo loader) and
  CLAP (HTSAT-tiny, RoBERTa text tower) captions, the work done once per table;
- the projection head's epochs (512 → 1024 → 512, batch 256) on cached features;
- BLIP-base steps at 224 px (batch 8; full model and ``--freeze-vision``; fp32 and bf16 autocast);
- ``--part scale``: the img2dataset shard reader (images/s on one core: streaming the tars, then
  streaming and decoding the JPEGs), and ``train blip`` itself on 2 CPU processes (DDP on gloo, 4 pairs
  each) against 1 process (8 pairs): the same global batch, step time read from the metrics' timestamps.

The compute of random weights is that of real ones. Tokenizers are built from the shipped caption
corpus so captions tokenise into word-sized pieces, as with the real vocabularies. Wall time on a
shared machine mostly measures the queue for a core, so process CPU time is printed too (with
``--threads 1`` it is what one free core takes). The GPU column is an estimate, not a measurement:
the FLOPs of each step counted by torch divided by an assumed sustained GPU throughput.

    python bench/training.py [--cache /tmp/training-bench] [--threads 2] [--pairs 64] [--blip-steps 3]
    python bench/training.py --part scale [--shard-images 2000] [--ddp-steps 4]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from dataclasses import replace
from pathlib import Path

# Run as a script, this file's folder comes first on sys.path and its name would hide the training package.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

import numpy as np
import torch
from torch.utils.flop_counter import FlopCounterMode

import image2mood.models._torchvision  # noqa: F401  (the torchvision guard)
import open_clip
from safetensors.torch import save_model
from tokenizers import ByteLevelBPETokenizer
from transformers import (BertTokenizerFast, BlipConfig, BlipForConditionalGeneration, BlipImageProcessor,
                          BlipProcessor, ClapConfig, ClapFeatureExtractor, ClapModel, RobertaTokenizerFast)

from image2mood.models.clap import ClapEncoder
from image2mood.models.clip import ImageEncoder
from image2mood.models.resolve import ResolvedModel
from training.blip import BlipTrainer, BlipTrainingConfig, set_image_size
from training.corpus import caption_corpus
from training.data import Dataset, Pair
from training.features import FeatureCache
from training.metrics import MetricsLog
from training.projection import Features, HeadConfig, train_head

GPU_FLOPS = 40e12  # assumed sustained bf16 throughput of one A100-class GPU: ~13 % of its peak, as small-batch fine-tuning gets


def _write_models(cache: Path, corpus: list[str]) -> dict[str, Path]:
    folders = {kind: cache / kind for kind in ("clip", "clap", "blip")}
    if all((folder / "config.done").is_file() for folder in folders.values()):
        return folders
    clip_cfg = open_clip.get_model_config("ViT-B-32")
    folders["clip"].mkdir(parents=True, exist_ok=True)
    save_model(open_clip.CLIP(**clip_cfg), str(folders["clip"] / "open_clip_model.safetensors"))
    (folders["clip"] / "open_clip_config.json").write_text(json.dumps({"model_cfg": clip_cfg}))

    bpe = ByteLevelBPETokenizer()
    bpe.train_from_iterator(corpus, vocab_size=8000, special_tokens=["<s>", "<pad>", "</s>", "<unk>", "<mask>"])
    roberta = RobertaTokenizerFast(tokenizer_object=bpe._tokenizer, model_max_length=512)
    ClapModel(ClapConfig()).save_pretrained(folders["clap"])
    ClapFeatureExtractor(truncation="rand_trunc", padding="repeatpad").save_pretrained(folders["clap"])
    roberta.save_pretrained(folders["clap"])

    words = sorted({w for sentence in corpus for w in sentence.lower().replace(",", " ").replace(":", " ").split()})
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *words, *"abcdefghijklmnopqrstuvwxyz.,:-'"]
    bert = BertTokenizerFast(vocab={t: i for i, t in enumerate(dict.fromkeys(vocab))}, model_max_length=512)
    bert.add_special_tokens({"bos_token": "[DEC]", "additional_special_tokens": ["[ENC]"]})
    config = BlipConfig(text_config={"vocab_size": 30524, "bos_token_id": bert.bos_token_id,
                                     "sep_token_id": bert.sep_token_id, "pad_token_id": bert.pad_token_id})
    BlipForConditionalGeneration(config).save_pretrained(folders["blip"])
    BlipProcessor(image_processor=BlipImageProcessor(size={"height": 384, "width": 384}),
                  tokenizer=bert).save_pretrained(folders["blip"])
    for folder in folders.values():
        (folder / "config.done").write_text("ok")
    return folders


def _photos(cache: Path, count: int, corpus: list[str]) -> Dataset:
    from PIL import Image

    folder = cache / "photos"
    folder.mkdir(exist_ok=True)
    rng = np.random.default_rng(0)
    pairs = []
    for i in range(count):
        path = folder / f"{i}.jpg"
        if not path.is_file():
            pixels = rng.integers(0, 256, (48, 64, 3), dtype=np.uint8)
            Image.fromarray(pixels).resize((640, 480), Image.Resampling.BICUBIC).save(path, quality=90)
        pairs.append(Pair(row=i, caption=corpus[i], image=path))
    return Dataset(source=str(folder), pairs=pairs)


def _timed(work) -> tuple[float, float]:
    wall, cpu = time.perf_counter(), time.process_time()
    work()
    return time.perf_counter() - wall, time.process_time() - cpu


def _flops(work) -> float:
    with FlopCounterMode(display=False) as counter:
        work()
    return float(counter.get_total_flops())


def _row(what: str, pairs: int, wall: float, cpu: float, flops_per_pair: float | None) -> None:
    gpu = f"{flops_per_pair * 1000 / GPU_FLOPS:8.2f}" if flops_per_pair else "       -"
    print(f"{what:44s} {wall / pairs * 1000:9.1f} {cpu / pairs * 1000:9.1f} {gpu}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cache", type=Path, default=Path("/tmp/training-bench"))
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--pairs", type=int, default=64, help="photos whose features are cached")
    parser.add_argument("--blip-steps", type=int, default=3, help="timed BLIP steps per variant")
    parser.add_argument("--part", choices=("costs", "scale"), default="costs")
    parser.add_argument("--shard-images", type=int, default=2000, help="scale: images in the generated shards")
    parser.add_argument("--ddp-steps", type=int, default=4, help="scale: BLIP steps per run (the first is not timed)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    corpus = caption_corpus()
    folders = _write_models(args.cache, corpus)
    dataset = _photos(args.cache, args.pairs, corpus)
    if args.part == "scale":
        shard_reader(args.cache / "shards", args.shard_images, corpus)
        ddp_against_one(args.cache, folders["blip"], dataset, args.ddp_steps)
        return
    print(f"load average {os.getloadavg()[0]:.1f}, {args.threads} torch threads; seconds per 1,000 pairs")
    print(f"{'what':44s} {'wall':>9s} {'cpu':>9s} {'GPU est.':>8s}")

    clip = ImageEncoder(ResolvedModel("clip", str(folders["clip"]), folders["clip"]))
    clap = ClapEncoder(ResolvedModel("clap", str(folders["clap"]), folders["clap"]))
    images = [dataset.image(pair) for pair in dataset.pairs[:8]]
    for name, encode, items, load, key in (
            ("cache: CLIP ViT-B/32 images (decode + encode)", clip.encode_images, dataset.pairs, dataset.image,
             lambda p: p.image_key),
            ("cache: CLAP captions", clap.encode_text, dataset.pairs, lambda p: p.caption, lambda p: p.caption_key),
            ("cache: CLIP captions (text-bridge)", clip.encode_text, dataset.pairs, lambda p: p.caption,
             lambda p: p.caption_key)):
        store = FeatureCache(args.cache / f"features-{len(name)}.npz", "bench", name)
        store.vectors.clear()
        wall, cpu = _timed(lambda: store.fill(items, key, load, encode, 32, name))
        sample = images if encode == clip.encode_images else [p.caption for p in dataset.pairs[:8]]
        _row(name, len(items), wall, cpu, _flops(lambda: encode(sample)) / 8)

    rng = np.random.default_rng(0)
    rows = 20000
    x = rng.normal(size=(rows, 512)).astype(np.float32)
    y = (x @ rng.normal(size=(512, 512)).astype(np.float32))
    features = Features(x / np.linalg.norm(x, axis=1, keepdims=True), y / np.linalg.norm(y, axis=1, keepdims=True),
                        np.arange(rows))
    valid = Features(features.inputs[:2000], features.targets[:2000], features.groups[:2000])
    wall, cpu = _timed(lambda: train_head(features, valid, HeadConfig(epochs=2, batch_size=256), progress=False))
    _row("head epoch (512→1024→512, batch 256)", rows * 2, wall, cpu, None)

    processor = BlipProcessor.from_pretrained(folders["blip"])
    for freeze in (False, True):
        for bf16 in (False, True):
            model = BlipForConditionalGeneration.from_pretrained(folders["blip"])
            set_image_size(model, processor, 224)
            log = MetricsLog(args.cache / "blip-metrics.jsonl")
            config = BlipTrainingConfig(epochs=1, max_steps=args.blip_steps + 1, batch_size=8, freeze_vision=freeze,
                                        save_every=10**9)
            pairs = dataset.pairs[: 8 * (args.blip_steps + 1)]
            trainer = BlipTrainer(model, processor, dataset, pairs, [], args.cache / "blip-out", config,
                                  torch.device("cpu"), log, bf16=bf16, progress=False)
            trainer.save = lambda: None  # timing the steps, not the checkpoint writes
            trainer._end_of_epoch = lambda epoch: None
            batch = pairs[:8]
            flops = _flops(lambda: trainer.loss(batch).backward()) / 8
            trainer.optimiser.zero_grad(set_to_none=True)
            trainer.config = replace(config, max_steps=1)
            trainer.run()  # warm-up step
            trainer.config = config
            wall, cpu = _timed(trainer.run)
            what = f"BLIP-base step 224 px{', vision frozen' if freeze else ''}, {'bf16' if bf16 else 'fp32'}"
            _row(what, 8 * args.blip_steps, wall, cpu, flops)
    print(f"GPU est.: FLOPs counted by torch / {GPU_FLOPS / 1e12:.0f} TFLOP/s sustained; an estimate, not a measurement")


def shard_reader(folder: Path, count: int, corpus: list[str]) -> None:
    """Images/s of the img2dataset shard reader on one core: the index (key, caption, member offsets),
    the tars streamed with their bytes, and streamed + decoded as a trainer's loader decodes them."""
    import io
    import tarfile

    from PIL import Image

    from image2mood.images import load_photo
    from training.data import read_pairs
    from training.shards import samples

    torch.set_num_threads(1)
    if not (folder / "done").is_file():
        folder.mkdir(parents=True, exist_ok=True)
        rng = np.random.default_rng(0)
        per_shard = 500
        for shard in range(0, count, per_shard):
            with tarfile.open(folder / f"{shard // per_shard:05d}.tar", "w") as tar:
                for i in range(shard, min(count, shard + per_shard)):
                    buffer = io.BytesIO()  # 224 px as img2dataset resizes for this project: smooth noise, ~15 kB
                    small = Image.fromarray(rng.integers(0, 256, (28, 28, 3), dtype=np.uint8))
                    small.resize((224, 224), Image.Resampling.BICUBIC).save(buffer, "JPEG", quality=95)
                    for ext, data in (("jpg", buffer.getvalue()), ("txt", corpus[i % len(corpus)].encode()),
                                      ("json", json.dumps({"key": f"{i:09d}", "status": "success"}).encode())):
                        info = tarfile.TarInfo(f"{i:09d}.{ext}")
                        info.size = len(data)
                        tar.addfile(info, io.BytesIO(data))
        (folder / "done").write_text("ok")
    size = sum(p.stat().st_size for p in folder.glob("*.tar")) / count / 1000
    print(f"shard reader, {count} images of 224 px ({size:.0f} kB each, in tars of 500), one core:")
    for what, work in (
            ("index (read_pairs: keys, captions, offsets)", lambda: read_pairs(folder)),
            ("stream with bytes", lambda: sum(1 for _ in samples(folder, "webdataset", with_bytes=True))),
            ("stream + decode (load_photo)", lambda: [load_photo(s.image, name=s.key)
                                                      for s in samples(folder, "webdataset", with_bytes=True)])):
        wall, cpu = _timed(work)
        print(f"  {what:44s} {count / wall:8.0f} images/s wall {count / cpu:8.0f} images/s per CPU second")


def ddp_against_one(cache: Path, blip: Path, dataset: Dataset, steps: int) -> None:
    """`train blip` on 2 CPU processes (4 pairs each) against 1 process (8 pairs), BLIP-base at 224 px,
    vision frozen, fp32: the same global batch. The step time is the mean gap between the metrics'
    timestamps after the first step (start-up, loading and the first step's warm-up left out)."""
    import subprocess

    table = cache / "ddp-pairs.csv"
    table.write_text("image,caption\n" + "".join(f"{p.image},{p.caption.replace(',', ' ')}\n" for p in dataset.pairs))
    env = {**os.environ, "IMAGE2MOOD_BLIP_MODEL": str(blip), "HF_HUB_OFFLINE": "1"}
    cores = os.cpu_count() or 2
    print(f"BLIP-base 224 px, vision frozen, fp32, global batch 8, {steps} steps (load {os.getloadavg()[0]:.1f}):")
    for processes, batch in ((1, 8), (2, 4)):
        out = cache / f"ddp-{processes}"
        command = [sys.executable, "-m", "image2mood_cli.main", "train", "blip", str(table), "--out", str(out),
                   "--processes", str(processes), "--batch-size", str(batch), "--max-steps", str(steps),
                   "--save-every", str(10**6), "--freeze-vision", "--no-bf16", "--epochs", "100"]
        threads = str(max(1, cores // processes))  # the same cores either way: 1 × all, or each its share
        subprocess.run(command, env={**env, "IMAGE2MOOD_THREADS": threads, "OMP_NUM_THREADS": threads}, check=True,
                       capture_output=True)
        times = [r["time"] for r in MetricsLog(out / "metrics.jsonl", append=True).records() if "train_loss" in r]
        step = (times[-1] - times[0]) / (len(times) - 1)
        print(f"  {processes} process{'es' if processes > 1 else ''} × {batch} pairs: {step:6.1f} s a step "
              f"({8 / step:.2f} pairs/s)")


if __name__ == "__main__":
    sys.exit(main())
