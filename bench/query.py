"""Photo → songs through ``POST /api/recommend``: p50/p95, first songs, where the time goes, and the naive path.

Run by hand (never in CI): ``.venv/bin/python bench/query.py [--requests 15] [--models DIR] [--faces DIR]``.

The models are full-size with random weights (bench/full_models.py; written into ``--models`` once). The
service runs in-process behind Flask's test client over an embedded store of ``--songs`` random songs:
the multipart upload, the photo's decode, the models, the search and the JSON are all in the time. The
photo is a 1920×1080 picture whose pixels change a little per request, so no answer comes from the photo
memo (one repeated photo is timed apart). Beside it, in the same run, the naive path: the same models
called one after the other, BLIP at its own 384 px in fp32, then CLIP, the projection, CLAP's text tower
and the search. Random BLIP never emits its end token, so every caption runs to the token limit: a worst
case. The machine's load average is printed; on a shared machine compare the ratios, not the seconds.

``--baseline REV`` runs this benchmark (without the naive path) on the working tree's code, then on git
revision REV's (a worktree, bench/baseline.py), each in a fresh process, ``--rounds`` times alternating,
and prints the two side by side with the ratio.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from image2mood.config import Settings
from image2mood.library import store_info
from image2mood.models import factory
from image2mood.models.blip import Captioner
from image2mood.models.lane import ModelLane
from image2mood.models.resolve import resolve_model
from image2mood.query import project
from image2mood.store import open_store
from image2mood.store.base import Song
from service.app import create_app

TARGET_P50_S, TARGET_FIRST_S, TARGET_SPEEDUP = 0.7, 0.3, 3.0


def photo(seed: int) -> bytes:
    """A 1920×1080 JPEG: smooth colour fields with texture, a different few pixels per seed."""
    y, x = np.mgrid[0:1080, 0:1920].astype(np.float32)
    rng = np.random.default_rng(0)
    rgb = np.stack([128 + 90 * np.sin(x / 300 + c) * np.cos(y / 200 - c) for c in range(3)], axis=-1)
    rgb += rng.normal(0, 12, rgb.shape)
    rgb[:4, :4] = seed % 251  # the memo keys on pixels: each request is a new photo
    out = io.BytesIO()
    Image.fromarray(np.clip(rgb, 0, 255).astype(np.uint8)).save(out, "JPEG", quality=90)
    return out.getvalue()


def full_models(folder: Path) -> Path:
    """The full-size random set in ``folder``, written first if missing (imported only then: a baseline
    revision's child runs may lack what bench/full_models.py imports)."""
    if (folder / "full-size-random.json").is_file():
        return folder
    from full_models import full_size_set

    return full_size_set(folder)


def fill_store(settings: Settings, songs: int) -> None:
    encoder = factory.clap_encoder(settings)
    rng = np.random.default_rng(1)
    vectors = rng.standard_normal((songs, encoder.dim)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    with open_store(settings.store, info=store_info(encoder, settings)) as store:
        store.upsert([Song(id=str(uuid.UUID(int=i + 1)), path=f"/music/{i}.mp3", content_hash=str(i),
                           title=f"song {i}", artist=f"artist {i % 50}", duration=200.0, vector=vectors[i])
                      for i in range(songs)])


def pct(values: list[float], q: float) -> float:
    return float(np.percentile(values, q))


def post(client, body: bytes, stream: bool) -> tuple[float, float, dict]:
    """(seconds to the first songs, seconds to the answer, the answer) of one request."""
    started = time.perf_counter()
    response = client.post("/api/recommend" + ("?stream=1" if stream else ""), buffered=not stream,
                           data={"image": (io.BytesIO(body), "wallpaper.jpg")}, content_type="multipart/form-data")
    if not stream:
        answer = response.get_json()
        elapsed = time.perf_counter() - started
        return elapsed, elapsed, answer
    first = None
    for chunk in response.response:
        for line in chunk.decode().splitlines():
            event = json.loads(line)
            if first is None:
                first = time.perf_counter() - started
            if event["event"] == "answer":
                return first, time.perf_counter() - started, event
    raise RuntimeError("the stream ended without an answer")


def naive(settings: Settings, body: bytes, store) -> dict[str, float]:
    """The same models one after the other, all in fp32, BLIP at 384 px: seconds per step."""
    blip = naive.captioner  # type: ignore[attr-defined]
    full = settings.model_copy(update={"precision": "fp32"})
    steps: dict[str, float] = {}

    def step(name, work):
        started = time.perf_counter()
        out = work()
        steps[name] = time.perf_counter() - started
        return out

    image = step("decode", lambda: Image.open(io.BytesIO(body)).convert("RGB"))
    caption = step("caption", lambda: blip.caption([image])[0])
    clip_vector = step("clip", lambda: factory.image_encoder(full).encode_images([image])[0])
    image_route = step("projection", lambda: project(factory.projection_head(settings), clip_vector))
    text_route = step("clap_text", lambda: factory.clap_encoder(full).encode_text([caption])[0])
    query = image_route + text_route
    step("search", lambda: store.search(query / np.linalg.norm(query), limit=10))
    steps["total"] = sum(steps.values())
    return steps


def fidelity(settings: Settings, body: bytes) -> dict[str, float]:
    """How close the configured BLIP (size, precision) stays to fp32 at the same size, on the bench photo:
    image features, teacher-forced logits (per position, the lowest) and the caption's CLAP text vector."""
    image = Image.open(io.BytesIO(body)).convert("RGB")
    fast, full = factory.captioner(settings), naive.captioner  # type: ignore[attr-defined]
    with torch.inference_mode():
        ids = fast.model.generate(pixel_values=fast.pixels([image]), max_new_tokens=settings.caption_tokens,
                                  do_sample=False, num_beams=1, interpolate_pos_encoding=fast.interpolate)
        outs = [captioner.model(pixel_values=fast.pixels([image]).to(captioner.dtype), input_ids=ids,
                                interpolate_pos_encoding=fast.interpolate) for captioner in (fast, full)]
        full_ids = full.model.generate(pixel_values=fast.pixels([image]).float(), max_new_tokens=settings.caption_tokens,
                                       do_sample=False, num_beams=1, interpolate_pos_encoding=fast.interpolate)
    cos = torch.nn.functional.cosine_similarity
    captions = [c.processor.batch_decode(i, skip_special_tokens=True)[0] for c, i in ((fast, ids), (full, full_ids))]
    text = factory.clap_encoder(settings).encode_text(captions)
    return {"image features": float(cos(outs[0].image_embeds.float().flatten(), outs[1].image_embeds.flatten(), dim=0)),
            "logits (lowest position)": float(cos(outs[0].logits.float()[0], outs[1].logits[0], dim=-1).min()),
            "caption's CLAP vector": float(text[0] @ text[1]),
            "same caption": float(captions[0] == captions[1])}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=15)
    parser.add_argument("--songs", type=int, default=1000)
    parser.add_argument("--models", type=Path, default=Path(tempfile.gettempdir()) / "image2mood-full-models")
    parser.add_argument("--faces", type=Path, default=None, help="the face models' folder (else CLIP stands in)")
    parser.add_argument("--baseline", metavar="REV", help="time this tree's code against git revision REV's")
    parser.add_argument("--rounds", type=int, default=1, help="with --baseline: candidate/baseline pairs")
    parser.add_argument("--no-naive", action="store_true", help="leave out the naive path and the fidelity check")
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    args = parser.parse_args()
    os.environ["HF_HUB_OFFLINE"] = "1"
    if args.baseline:
        return against_revision(args)
    models = full_models(args.models)
    work = Path(tempfile.mkdtemp(prefix="bench-query-"))
    settings = Settings(_env_file=None, models=models, store=str(work / "store"),
                        **({"faces": args.faces} if args.faces else {}))
    print(f"load average before: {os.getloadavg()}; {os.cpu_count()} cores; precision {settings.precision}, "
          f"BLIP at {settings.caption_image_size} px, {settings.caption_tokens} tokens")
    fill_store(settings, args.songs)

    naive.captioner = Captioner(resolve_model("blip", settings.model_spec("blip")),  # type: ignore[attr-defined]
                                max_new_tokens=settings.caption_tokens, image_size=0, precision="fp32")
    lane = ModelLane()  # as `serve` runs: the main thread runs the models, requests come from other threads
    app = create_app(settings, lane)
    client, store = app.test_client(), app.extensions["image2mood"].store

    def measure() -> None:
        post(client, photo(10_000), stream=False)  # warm: first-call allocations
        if not args.no_naive:
            lane.run(lambda: naive(settings, photo(10_001), store))

        plain, first, streamed, naive_runs, breakdown = [], [], [], [], []
        for i in range(args.requests):  # interleaved, so that a busy moment hits both paths alike
            seconds, _, answer = post(client, photo(2 * i), stream=False)
            plain.append(seconds)
            breakdown.append(answer["timings_ms"])
            first_s, answer_s, _ = post(client, photo(2 * i + 1), stream=True)
            first.append(first_s)
            streamed.append(answer_s)
            if not args.no_naive:
                naive_runs.append(lane.run(lambda: naive(settings, photo(5000 + i), store)))
        repeat = [post(client, photo(0), stream=False)[0] for _ in range(3)]  # a photo the memo holds
        if args.json:
            args.json.write_text(json.dumps({"answer p50": pct(plain, 50), "answer p95": pct(plain, 95),
                                             "first songs p50": pct(first, 50), "streamed answer p50": pct(streamed, 50),
                                             "memo p50": statistics.median(repeat)}))
        if args.no_naive:
            print(f"answer p50 {pct(plain, 50):.3f} s p95 {pct(plain, 95):.3f} s, first songs p50 {pct(first, 50):.3f} s")
            print("where the time goes (p50 ms):", {key: round(statistics.median(b[key] for b in breakdown if key in b), 1)
                                                    for key in breakdown[0]})
            store.close()
            return

        naive_total = [run["total"] for run in naive_runs]
        print(f"\nPOST /api/recommend over {args.requests} requests of a 1920x1080 photo ({args.songs} songs):")
        print(f"  answer         p50 {pct(plain, 50):.3f} s  p95 {pct(plain, 95):.3f} s   (target p50 <= {TARGET_P50_S} s)")
        print(f"  first songs    p50 {pct(first, 50):.3f} s  p95 {pct(first, 95):.3f} s   (stream=1; target p50 <= "
              f"{TARGET_FIRST_S} s)")
        print(f"  streamed answer p50 {pct(streamed, 50):.3f} s")
        print(f"  same photo again (memo) p50 {statistics.median(repeat):.3f} s")
        print(f"  naive sequential p50 {pct(naive_total, 50):.3f} s  p95 {pct(naive_total, 95):.3f} s")
        print(f"  speed-up p50 {pct(naive_total, 50) / pct(plain, 50):.2f}x (target >= {TARGET_SPEEDUP}x)")
        print("  where the time goes (p50 ms, the service's own timings; one after another on the model lane):")
        for key in breakdown[0]:
            print(f"    {key:<14} {statistics.median(b[key] for b in breakdown if key in b):8.1f}")
        print("  naive steps (p50 ms):")
        for key in naive_runs[0]:
            print(f"    {key:<14} {statistics.median(run[key] for run in naive_runs) * 1000:8.1f}")
        print(f"  fidelity of BLIP at {settings.caption_image_size} px, precision {settings.precision}, to fp32 at the "
              "same size (cosine):")
        for key, value in lane.run(lambda: fidelity(settings, photo(1))).items():
            print(f"    {key:<26} {value:.4f}")
        store.close()

    requests = threading.Thread(target=measure, name="requests")
    requests.start()
    lane.serve(until=lambda: not requests.is_alive())
    print(f"load average after: {os.getloadavg()}")


def against_revision(args: argparse.Namespace) -> None:
    """This benchmark on this tree's code and on ``args.baseline``'s, alternating, each in a fresh process."""
    from baseline import ROOT, code_env, revision_tree, side_by_side

    print(f"load average before: {os.getloadavg()}; {os.cpu_count()} cores")
    figures: dict[str, list[dict[str, float]]] = {"candidate": [], "baseline": []}
    out = Path(tempfile.mkdtemp(prefix="bench-query-rev-")) / "figures.json"
    child = [sys.executable, __file__, "--requests", str(args.requests), "--songs", str(args.songs), "--models",
             str(args.models), "--no-naive", "--json", str(out), *(["--faces", str(args.faces)] if args.faces else [])]
    full_models(args.models)
    with revision_tree(args.baseline) as tree:
        for _ in range(args.rounds):
            for side, code in (("candidate", ROOT), ("baseline", tree)):
                run = subprocess.run(child, env=code_env(code), capture_output=True, text=True, check=False)
                if run.returncode:
                    raise SystemExit(f"the {side} run failed:\n{run.stderr[-3000:]}")
                figures[side].append(json.loads(out.read_text()))
                print(f"  {side:<9} {figures[side][-1]}  load {os.getloadavg()[0]:.1f}")
    print(f"\nPOST /api/recommend against {args.baseline} (the median over rounds):")
    side_by_side([(key, statistics.median(f[key] for f in figures["candidate"]),
                   statistics.median(f[key] for f in figures["baseline"])) for key in figures["candidate"][0]],
                 "s", higher_is_better=False)
    print(f"load average after: {os.getloadavg()}")


if __name__ == "__main__":
    main()
