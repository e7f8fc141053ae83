"""JPEG bombs: scans, coefficient buffers and marker floods are bounded before libjpeg decodes a byte.

Each bomb is crafted here in pure Python (every coefficient zero, so a 14000×14000 photo is a few hundred
KB) and measured in a fresh process: CPU time and the rise of peak RSS. Then eight of them go to a real
`image2mood serve` at once, beside uploads that take every request thread, while /api/health is timed.
"""

from __future__ import annotations

import io
import json
import math
import re
import struct
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import post_multipart, serving
from image2mood.errors import ImageError
from image2mood.images import load_photo
from image2mood.jpeg_cost import MAX_SCAN_PIXELS, MAX_SCANS, MAX_SEGMENTS, read_layout
from service.threads import HealthLaneDispatcher, is_health_check

RNG = np.random.default_rng(5)
GREY, YCC444, CMYK = ((1, 1),), ((1, 1),) * 3, ((1, 1),) * 4


# ------------------------------------------------------------------ crafting JPEGs


def _segment(marker: int, payload: bytes) -> bytes:
    return struct.pack(">BBH", 0xFF, marker, len(payload) + 2) + payload


def _entropy(codes: list[tuple[int, int]]) -> bytes:
    """Huffman-coded bits (value, length) as entropy-coded bytes: padded with 1s, every 0xFF stuffed."""
    bits = "".join(format(value, f"0{length}b") if length else "" for value, length in codes)
    bits += "1" * (-len(bits) % 8)
    return int(bits, 2).to_bytes(len(bits) // 8, "big").replace(b"\xff", b"\xff\x00") if bits else b""


def crafted_jpeg(width: int, height: int, sampling: tuple[tuple[int, int], ...] = GREY, *,
                 extra_scans: int = 0, sequential: bool = False) -> bytes:
    """A JPEG of all-zero coefficients. Progressive: a DC scan, an AC scan per component, then
    ``extra_scans`` AC refinement scans of the first component (each visits every one of its blocks).
    ``sequential``: a baseline frame with each component in its own scan (libjpeg buffers it whole too)."""
    hmax, vmax = max(h for h, _ in sampling), max(v for _, v in sampling)

    def blocks(h: int, v: int) -> int:
        return math.ceil(math.ceil(width * h / hmax) / 8) * math.ceil(math.ceil(height * v / vmax) / 8)

    def eob_runs(n: int) -> list[tuple[int, int]]:  # EOBr symbols (code r, 4 bits) covering n blocks
        runs = []
        while n:
            run = min(n, 32767)
            r = run.bit_length() - 1
            runs += [(r, 4), (run - (1 << r), r)]
            n -= run
        return runs

    adobe = _segment(0xEE, b"Adobe" + struct.pack(">HHHB", 100, 0, 0, 0)) if len(sampling) == 4 else b""
    frame = struct.pack(">BHHB", 8, height, width, len(sampling)) + b"".join(
        bytes([c + 1, h << 4 | v, 0]) for c, (h, v) in enumerate(sampling))
    out = b"\xff\xd8" + adobe + _segment(0xDB, b"\x00" + bytes([1] * 64))
    out += _segment(0xC0 if sequential else 0xC2, frame)
    out += _segment(0xC4, b"\x00" + bytes([1] + [0] * 15) + b"\x00")  # DC: difference 0 is '0'
    out += _segment(0xC4, b"\x10" + bytes([0, 0, 0, 15] + [0] * 12) + bytes(r << 4 for r in range(15)))  # AC: EOBr
    if sequential:  # per block: DC '0', then EOB '0000'
        for c, (h, v) in enumerate(sampling):
            out += _segment(0xDA, bytes([1, c + 1, 0, 0, 63, 0])) + bytes(math.ceil(5 * blocks(h, v) / 8))
        return out + b"\xff\xd9"
    mcus = math.ceil(width / (8 * hmax)) * math.ceil(height / (8 * vmax))
    dc_blocks = blocks(1, 1) if len(sampling) == 1 else mcus * sum(h * v for h, v in sampling)
    out += _segment(0xDA, bytes([len(sampling)]) + b"".join(bytes([c + 1, 0]) for c in range(len(sampling)))
                    + b"\x00\x00\x00") + bytes(math.ceil(dc_blocks / 8))
    for c, (h, v) in enumerate(sampling):
        out += _segment(0xDA, bytes([1, c + 1, 0, 1, 63, 0x00])) + _entropy(eob_runs(blocks(h, v)))
    refine = _segment(0xDA, bytes([1, 1, 0, 1, 63, 0x10])) + _entropy(eob_runs(blocks(*sampling[0])))
    return out + refine * extra_scans + b"\xff\xd9"


def _photo(size: tuple[int, int] = (400, 300), **options: object) -> bytes:
    """A noisy RGB JPEG saved by Pillow (its entropy-coded data full of stuffed 0xFF bytes)."""
    pixels = RNG.integers(0, 256, (size[1] // 10, size[0] // 10, 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(np.kron(pixels, np.ones((10, 10, 1), np.uint8))).save(buf, "JPEG", **options)
    return buf.getvalue()


def _scan(jpeg: bytes, index: int) -> bytes:
    """The ``index``-th SOS segment of a JPEG with its entropy-coded data (up to the next marker)."""
    starts = [m.start() for m in re.finditer(rb"\xff\xda", jpeg)]
    end = re.compile(rb"\xff[^\x00\xd0-\xd7]").search(jpeg, starts[index] + 2).start()
    return jpeg[starts[index]:end]


# ------------------------------------------------------------------ reading the markers


@pytest.mark.parametrize(("mode", "options", "scans", "blocks"), [
    ("RGB", {"subsampling": 2}, 10, 50 * 38 + 25 * 19 * 2),  # 4:2:0: Y's 49×37 blocks rounded up to its 2×2
    ("RGB", {"subsampling": 0}, 10, 49 * 37 * 3),
    ("L", {}, 6, 49 * 37),
    ("CMYK", {}, 18, 49 * 37 * 4),
])
def test_pillows_progressive_files_are_read_as_libjpeg_reads_them(
        mode: str, options: dict[str, int], scans: int, blocks: int) -> None:
    buf = io.BytesIO()
    Image.new(mode, (392, 296)).save(buf, "JPEG", progressive=True, **options)
    layout = read_layout(buf.getvalue())
    assert (layout.width, layout.height, layout.progressive, len(layout.scans)) == (392, 296, True, scans)
    assert layout.coefficient_bytes == blocks * 64 * 2


def test_entropy_data_restart_markers_and_segments_holding_marker_bytes_are_skipped() -> None:
    jpeg = _photo(progressive=True, restart_marker_blocks=1, quality=95)
    assert jpeg.count(b"\xff\xd0") > 100 and jpeg.count(b"\xff\x00") > 100
    comment = _segment(0xFE, b"\xff\xda\x00\x08\x01\x01\x00\x00\x3f\x00" * 50)  # an SOS inside a comment
    layout = read_layout(jpeg[:2] + comment + jpeg[2:])
    assert len(layout.scans) == 10 and layout.scans[0] == (1, 2, 3) and layout.segments < 40


def test_baseline_photos_hold_no_coefficient_buffer_and_load_as_before() -> None:
    jpeg = _photo((1600, 1200), quality=90)
    layout = read_layout(jpeg)
    assert not layout.progressive and layout.scans == ((1, 2, 3),) and layout.coefficient_bytes == 0
    assert load_photo(jpeg).size == (800, 600)  # half scale keeps the 768-px decode side


def test_progressive_photos_with_a_few_extra_scans_still_load() -> None:
    jpeg = _photo((800, 600), progressive=True)
    first_ac = _scan(jpeg, 1)  # Y's coefficients 1-5: sent again, it sets them to the same values
    out = np.asarray(load_photo(jpeg.replace(first_ac, first_ac * 6)), np.int16)
    assert np.abs(out - np.asarray(load_photo(jpeg), np.int16)).max() <= 1


def test_a_copied_scan_over_the_limit_is_refused_naming_the_file_and_the_fix() -> None:
    jpeg = _photo((800, 600), progressive=True)
    bomb = jpeg[:-2] + _scan(jpeg, -1) * MAX_SCANS + b"\xff\xd9"
    with pytest.raises(ImageError) as err:
        load_photo(bomb, name="scans.jpg")
    assert str(err.value) == (
        f"scans.jpg is a 800×600 progressive JPEG of more than {MAX_SCANS} scans (libjpeg writes 6 to 18), "
        "each decoded over the whole photo; image2mood refuses it: re-save it as a baseline (non-progressive) JPEG")


def test_a_flood_of_marker_segments_is_refused_before_pillow_parses_it() -> None:
    """Pillow parses the segments before the first scan in Python: 2 M of them took it 2 s."""
    jpeg = crafted_jpeg(64, 64)
    flood = jpeg[:2] + b"\xff\xfe\x00\x02" * 2_000_000 + jpeg[2:]
    started = time.thread_time()
    with pytest.raises(ImageError, match=rf"flood\.jpg is a JPEG with more than {MAX_SEGMENTS:,} marker"):
        load_photo(flood, name="flood.jpg")
    assert time.thread_time() - started < 0.3


def test_a_decode_past_its_cpu_time_is_stopped() -> None:
    jpeg = _photo((4000, 3000), quality=95)  # about 0.2 s of CPU here
    started = time.thread_time()
    with pytest.raises(ImageError, match=r"^big\.jpg took more than 0\.02 s of CPU to decode and was stopped; "):
        load_photo(jpeg, name="big.jpg", max_decode_s=0.02)
    assert time.thread_time() - started < 0.15
    assert load_photo(jpeg, name="big.jpg").size == (1000, 750)  # decoded at a quarter scale


# ------------------------------------------------------------------ each bomb in a fresh process

_PROBE = """
import json, re, resource, sys
from pathlib import Path
from image2mood.errors import ImageError
from image2mood.images import load_photo

def mb(key: str) -> float:
    return int(re.search(key + r":\\s+(\\d+)", Path("/proc/self/status").read_text())[1]) / 1024

path = Path(sys.argv[1])
data = path.read_bytes()
Path("/proc/self/clear_refs").write_text("5")  # peak RSS (VmHWM) from here
base, before = mb("VmRSS"), resource.getrusage(resource.RUSAGE_SELF)
try:
    answer = {"size": load_photo(data, name=path.name).size}
except ImageError as exc:
    answer = {"error": str(exc)}
after = resource.getrusage(resource.RUSAGE_SELF)
answer.update(cpu_s=after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime, mb=mb("VmHWM") - base)
print(json.dumps(answer))
"""

BOMBS = {  # name: (crafted JPEG, the refusal it gets), measured before the fix in a fresh process
    # the bomb: 200 refinement scans, each over 3 M blocks (26 s of CPU here, +377 MB)
    "issue.jpg": (lambda: crafted_jpeg(14000, 14000, extra_scans=200),
                  f"issue.jpg is a 14000×14000 progressive JPEG of more than {MAX_SCANS} scans"),
    # the same within the decode memory, so that only the scan limit stops it (11 s)
    "scans.jpg": (lambda: crafted_jpeg(9000, 9000, extra_scans=200),
                  f"scans.jpg is a 9000×9000 progressive JPEG of more than {MAX_SCANS} scans"),
    # fewer scans than the limit, over 81 MP, just over the scan-pass limit (1.1 s)
    "passes.jpg": (lambda: crafted_jpeg(9000, 9000, extra_scans=18),
                   f"passes.jpg is a 9000×9000 progressive JPEG of 20 scans, each decoded over the whole photo: "
                   f"1,620 MP in all, and the limit is {MAX_SCAN_PIXELS / 1e6:,.0f} MP"),
    # 1.1 GB of coefficients for 1.2 MB (before: +1,134 MB peak RSS)
    "444.jpg": (lambda: crafted_jpeg(14000, 14000, YCC444),
                "444.jpg is a 14000×14000 RGB progressive JPEG (196 MP), which takes about 1188 MB to decode; "
                "the limit is 280 MB (IMAGE2MOOD_MAX_DECODE_MB): re-save it as a baseline (non-progressive) JPEG"),
    "cmyk.jpg": (lambda: crafted_jpeg(14000, 14000, CMYK),
                 "cmyk.jpg is a 14000×14000 CMYK progressive JPEG (196 MP), which takes about 1562 MB to decode"),
    # a baseline frame whose components come one per scan is buffered whole as well
    "split.jpg": (lambda: crafted_jpeg(14000, 14000, YCC444, sequential=True),
                  "split.jpg is a 14000×14000 RGB JPEG of 3 separate scans (196 MP), which takes about 1188 MB"),
}


def _probe(path: Path) -> dict:
    run = subprocess.run([sys.executable, "-c", _PROBE, str(path)], capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    return json.loads(run.stdout)


@pytest.mark.parametrize("name", BOMBS)
def test_each_bomb_is_refused_within_2_s_of_cpu_and_300_mb(tmp_path: Path, name: str) -> None:
    craft, refusal = BOMBS[name]
    path = tmp_path / name
    path.write_bytes(craft())
    assert path.stat().st_size < 6_000_000  # within the upload limit (20 MB)
    answer = _probe(path)
    assert answer.get("error", "").startswith(refusal), answer
    assert answer["cpu_s"] < 2 and answer["mb"] < 300, answer


def test_the_worst_progressive_file_still_accepted_costs_under_2_s_and_300_mb(tmp_path: Path) -> None:
    """19 scans over 81 MP of grey: just under the scan-pass limit and within the decode memory."""
    path = tmp_path / "worst.jpg"
    path.write_bytes(crafted_jpeg(9000, 9000, extra_scans=17))
    assert 0.95 * MAX_SCAN_PIXELS < read_layout(path.read_bytes()).scan_pixels <= MAX_SCAN_PIXELS
    answer = _probe(path)
    assert answer.get("size") == [1024, 1024], answer
    assert 150 < answer["mb"] < 300, answer  # the probe sees the 155 MB of coefficients it decodes through
    assert answer["cpu_s"] < 2, answer


# ------------------------------------------------------------------ eight bombs at a real server


def test_health_check_recognition() -> None:
    class Request:
        error = None

        def __init__(self, command: str, path: str) -> None:
            self.command, self.path = command, path

    class Channel:
        def __init__(self, *requests: Request) -> None:
            self.requests = list(requests)

    assert is_health_check(Channel(Request("GET", "/api/health"), Request("POST", "/api/recommend")))
    assert not is_health_check(Channel(Request("POST", "/api/health")))
    assert not is_health_check(Channel(Request("GET", "/api/health/x")))
    assert not is_health_check(Channel())
    dispatcher = HealthLaneDispatcher(3)
    try:
        assert len(dispatcher.threads) == 3 and len(dispatcher.health.threads) == 1
    finally:
        dispatcher.shutdown()
    assert not dispatcher.threads and not dispatcher.health.threads


def test_health_answers_within_1_s_while_eight_bombs_wait_behind_busy_threads(
        tmp_path: Path, cli_env: dict[str, str]) -> None:
    """Two request threads, both taken by the worst accepted files (about 1 s of decoding each, one at a
    time in the decode memory), eight bombs queued behind them: health still answers at once, and every
    bomb gets its 400 with the reason."""
    worst = crafted_jpeg(9000, 9000, extra_scans=17)
    bombs = [(name, craft(), refusal) for name, (craft, refusal) in BOMBS.items()]
    bombs += [(f"again-{name}", data, refusal.replace(name, f"again-{name}")) for name, data, refusal in bombs[:2]]
    answers: dict[str, tuple[int, dict]] = {}

    def upload(name: str, data: bytes) -> None:
        answers[name] = post_multipart(url + "/api/recommend", {"image": (name, data)}, timeout=300)

    with serving(tmp_path / "store", cli_env, tmp_path, args=("--threads", "2")) as url:
        heavy = [threading.Thread(target=upload, args=(f"worst-{i}.jpg", worst)) for i in range(4)]
        for thread in heavy:
            thread.start()
        time.sleep(1)  # both threads are decoding or waiting for the decode memory
        bombers = [threading.Thread(target=upload, args=(name, data)) for name, data, _ in bombs]
        for thread in bombers:
            thread.start()
        time.sleep(0.5)
        waits = []
        for _ in range(3):
            started = time.monotonic()
            with urllib.request.urlopen(url + "/api/health", timeout=60) as response:
                assert response.status == 200 and json.loads(response.read())["status"] == "ok"
            waits.append(time.monotonic() - started)
        busy = sum(thread.is_alive() for thread in heavy + bombers)
        for thread in heavy + bombers:
            thread.join(timeout=300)

    assert busy >= 8, f"only {busy} uploads were still in flight when health answered"
    assert max(waits) < 1, waits
    assert len(bombs) == 8
    for name, _, refusal in bombs:
        status, body = answers[name]
        assert status == 400 and body["error"]["message"].startswith(refusal), body
    assert all(answers[f"worst-{i}.jpg"][0] == 200 for i in range(4)), answers
