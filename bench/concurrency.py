"""Many users at once: photos/s and answer p50/p95 with 1, 4 and 8 concurrent clients on distinct photos,
and /api/health's latency throughout.

Run by hand (never in CI): ``.venv/bin/python bench/concurrency.py [--per-client 3] [--clients 1,4,8]``.

The service is `image2mood serve` (waitress) in its own process over a store of 1,000 random songs, with the
full-size random models (bench/full_models.py). Each client posts its own photos one after another (every
photo new: the photo memo never answers); a prober asks /api/health every 0.2 s meanwhile. Each round also
gives the CPU the service and this process (the clients and the prober) used, in cores: they share the
machine's cores. On a shared machine compare the ratios within one run; the load average is printed.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import psutil

from query import fill_store, full_models, photo
from service_load import health_s, recommend_s, serve

from image2mood.config import Settings

TARGET_SPEEDUP, TARGET_HEALTH_S = 2.0, 0.1  # 8 clients' photos/s against one client's; health's worst


def _cpu_s(process: psutil.Process) -> float:
    """CPU seconds (user and system) ``process`` has used so far."""
    times = process.cpu_times()
    return times.user + times.system


def _round(port: int, clients: int, photos: list[bytes],
           service: psutil.Process) -> tuple[float, list[float], list[float], tuple[float, float]]:
    """(photos/s, answer seconds, health seconds, cores used by (the service, this process)) with ``clients``
    posting ``photos`` between them."""
    here = psutil.Process()
    done, health = threading.Event(), []

    def probe() -> None:
        while not done.is_set():
            seconds = health_s(port)
            health.append(float("inf") if seconds is None else seconds)
            time.sleep(0.2)

    prober = threading.Thread(target=probe)
    prober.start()
    share = [photos[i::clients] for i in range(clients)]
    started, cpu = time.perf_counter(), (_cpu_s(service), _cpu_s(here))
    with ThreadPoolExecutor(clients) as pool:
        answers = [s for seconds in pool.map(lambda mine: [recommend_s(port, p) for p in mine], share) for s in seconds]
    wall = time.perf_counter() - started
    cores = ((_cpu_s(service) - cpu[0]) / wall, (_cpu_s(here) - cpu[1]) / wall)
    done.set()
    prober.join()
    return len(photos) / wall, answers, health, cores


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--per-client", type=int, default=3, help="photos each client posts")
    parser.add_argument("--clients", default="1,4,8")
    parser.add_argument("--models", type=Path, default=Path(tempfile.gettempdir()) / "image2mood-full-models")
    args = parser.parse_args()
    os.environ["HF_HUB_OFFLINE"] = "1"
    models, work = full_models(args.models), Path(tempfile.mkdtemp(prefix="bench-concurrency-"))
    settings = Settings(_env_file=None, models=models, store=str(work / "store"))
    fill_store(settings, 1000)
    counts = [int(c) for c in args.clients.split(",")]
    seed = iter(range(30_000, 10**6))
    print(f"load average before: {os.getloadavg()}; {os.cpu_count()} cores")
    rows = []
    with serve(work / "store", {**os.environ, "IMAGE2MOOD_MODELS": str(models)}, work / "serve.log") as port:
        service = psutil.Process().children()[0]
        for _ in range(2):
            recommend_s(port, photo(next(seed)))  # warm
        for clients in counts:
            photos = [photo(next(seed)) for _ in range(clients * args.per_client)]
            rate, answers, health, cores = _round(port, clients, photos, service)
            rows.append((clients, rate, answers, health, cores))
            print(f"  {clients} clients done; load {os.getloadavg()[0]:.1f}")
    one = rows[0][1]
    print(f"\nPOST /api/recommend, concurrent clients, distinct photos ({args.per_client} a client):")
    for clients, rate, answers, health, (service_cores, client_cores) in rows:
        print(f"  {clients} clients: {rate:.2f} photos/s ({rate / one:.2f}x {counts[0]} client)  answer p50 "
              f"{np.percentile(answers, 50):.3f} s p95 {np.percentile(answers, 95):.3f} s  /api/health max "
              f"{max(health) * 1000:.0f} ms over {len(health)} probes (target < {TARGET_HEALTH_S * 1000:.0f} ms)  "
              f"cores used: service {service_cores:.2f}, clients {client_cores:.2f} of {os.cpu_count()}")
    print(f"  target: {max(counts)} clients >= {TARGET_SPEEDUP}x one client's photos/s")
    print(f"load average after: {os.getloadavg()}")


if __name__ == "__main__":
    main()
