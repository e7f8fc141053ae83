"""Captions in Korean: one caption's translation with a full-size NLLB-200 (600M), and the songs' latency with
display translation on and off.

Run by hand (never in CI): ``.venv/bin/python bench/translate.py [--runs 5] [--requests 6] [--models DIR]``.

The translator is ``facebook/nllb-200-distilled-600M``'s architecture (M2M100: d_model 1024, 12 + 12 layers,
16 heads, FFN 4096, 256,206 tokens) with random weights, written into ``DIR/translator`` once; its tokenizer is
the tiny set's NLLB tokenizer (its ids are a subset, so the compute is the real model's). Random weights never
choose to stop, so each translation is pinned to ``--tokens`` new tokens (a 10-word English caption is about 20
NLLB tokens in Korean). Part 1 times :meth:`Translator.translate` on fresh captions (no cache hit) at the
precision the service would use (int8 linear layers on a CPU) and at fp32. Part 2 runs the service in-process
(bench/query.py's full-size random CLIP, BLIP and CLAP over 1,000 random songs) and times, per streamed request,
the ``answer`` event (the songs) with ``lang=en`` (nothing to translate) and ``lang=ko``, alternating, and the
``captions`` event that follows with ``lang=ko``. The load average is printed; compare within one run.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

import image2mood.models._torchvision  # noqa: F401  (first: lets transformers import torchvision)

import torch
from transformers import GenerationConfig, M2M100Config, M2M100ForConditionalGeneration

from full_models import full_size_set
from image2mood.config import Settings
from image2mood.models import factory
from image2mood.models.resolve import resolve_model
from image2mood.models.tiny import _tiny_nllb_tokenizer
from image2mood.models.translator import ENGLISH, Translator
from query import fill_store, photo
from service.app import create_app

NLLB_600M = {"vocab_size": 256206, "d_model": 1024, "encoder_layers": 12, "decoder_layers": 12,
             "encoder_attention_heads": 16, "decoder_attention_heads": 16, "encoder_ffn_dim": 4096,
             "decoder_ffn_dim": 4096, "max_position_embeddings": 1024, "scale_embedding": True}
"""facebook/nllb-200-distilled-600M's config.json, the sizes that set its compute."""
CAPTION = "a man and a woman walking on the beach at sunset with a dog"


def full_size_translator(folder: Path, tokens: int) -> Path:
    """Write the random NLLB-600M into ``folder`` unless it is there; every generation makes ``tokens`` tokens."""
    if not (folder / "model.safetensors").is_file():
        torch.manual_seed(0)
        tokenizer = _tiny_nllb_tokenizer()
        config = M2M100Config(**NLLB_600M, pad_token_id=tokenizer.pad_token_id, bos_token_id=tokenizer.bos_token_id,
                              eos_token_id=tokenizer.eos_token_id, decoder_start_token_id=tokenizer.eos_token_id)
        M2M100ForConditionalGeneration(config).save_pretrained(folder)
        tokenizer.save_pretrained(folder)
    GenerationConfig(min_new_tokens=tokens, max_new_tokens=tokens, decoder_start_token_id=2, eos_token_id=2,
                     pad_token_id=1).save_pretrained(folder)
    return folder


def time_translation(folder: Path, precision: str, runs: int, tokens: int) -> tuple[float, float, float]:
    """(load s, median s, slowest s) of translating one fresh caption into Korean, ``runs`` times."""
    started = time.perf_counter()
    translator = Translator(resolve_model("translator", str(folder)), precision=precision, max_new_tokens=tokens)
    loaded = time.perf_counter() - started
    translator.translate([CAPTION + " and a kite"], ENGLISH, "kor_Hang")  # warm-up
    times = []
    for i in range(runs):
        started = time.perf_counter()
        translator.translate([f"{CAPTION} number {i}"], ENGLISH, "kor_Hang")  # a new caption: no cache hit
        times.append(time.perf_counter() - started)
    return loaded, statistics.median(times), max(times)


def stream_times(client, body: bytes, lang: str) -> dict[str, float]:
    """Seconds from the request to each event of a streamed answer; the translator's cache is emptied first (random
    BLIP writes the same caption for every photo, which would otherwise be translated once)."""
    factory.translator(client.application.extensions["image2mood"].settings).clear_cache()
    started = time.perf_counter()
    response = client.post("/api/recommend?stream=1", buffered=False, content_type="multipart/form-data",
                           data={"image": (io.BytesIO(body), "wallpaper.jpg"), "lang": lang})
    times = {}
    for chunk in response.response:
        for line in chunk.decode().splitlines():
            times[json.loads(line)["event"]] = time.perf_counter() - started
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--requests", type=int, default=6, help="Streamed requests per language.")
    parser.add_argument("--tokens", type=int, default=20)
    parser.add_argument("--songs", type=int, default=1000)
    parser.add_argument("--models", type=Path, default=Path(tempfile.gettempdir()) / "image2mood-full-models")
    parser.add_argument("--part", choices=["all", "translate", "service"], default="all")
    args = parser.parse_args()
    print(f"load average before: {os.getloadavg()}; torch threads {torch.get_num_threads()}")
    models = full_size_set(args.models)
    folder = full_size_translator(models / "translator", args.tokens)
    for precision in ("auto", "fp32") if args.part != "service" else ():
        loaded, median, slowest = time_translation(folder, precision, args.runs, args.tokens)
        print(f"translate one caption, {args.tokens} tokens, precision {precision}: median {median:.3f} s, "
              f"slowest {slowest:.3f} s ({args.runs} runs; loading took {loaded:.1f} s)")

    if args.part == "translate":
        return
    with tempfile.TemporaryDirectory() as work:
        settings = Settings(_env_file=None, models=models, store=str(Path(work) / "store"),
                            results=Path(work) / "results", translator=str(folder))
        fill_store(settings, args.songs)
        app = create_app(settings)
        client = app.test_client()
        app.extensions["image2mood"].warm_up()
        for lang in ("en", "ko"):  # the translator loads at the first Korean request: not timed
            stream_times(client, photo(10_000), lang)
        runs: dict[str, list[dict[str, float]]] = {"en": [], "ko": []}
        for i in range(args.requests):
            for lang in ("en", "ko"):
                runs[lang].append(stream_times(client, photo(2 * i + (lang == "ko")), lang))
        app.extensions["image2mood"].store.close()
    for lang, times in runs.items():
        answer = statistics.median(t["answer"] for t in times)
        captions = [t["captions"] for t in times if "captions" in t]
        line = f"lang={lang}: songs (answer event) median {answer:.3f} s"
        if captions:
            line += f", Korean caption (captions event) median {statistics.median(captions):.3f} s"
        print(line + f" ({len(times)} requests)")
    print(f"load average after: {os.getloadavg()}")


if __name__ == "__main__":
    main()
