"""8 concurrent clients posting photos to a real `image2mood serve` for 30 s: no error, every answer valid."""

from __future__ import annotations

import threading
import time
from pathlib import Path

from conftest import post_multipart, run_cli, serving
from media import write_tone
from media_images import write_photo

CLIENTS = 8
SECONDS = 30


def test_eight_clients_for_thirty_seconds(tmp_path: Path, cli_env: dict[str, str]) -> None:
    music, store = tmp_path / "music", tmp_path / "store"
    music.mkdir()
    for i in range(8):
        write_tone(music / f"s{i}.flac", seconds=3, freq=200 + 90 * i, tags={"artist": f"A{i % 3}"})
    env = {**cli_env, "IMAGE2MOOD_WINDOWS_PER_SONG": "1"}
    assert run_cli(["index", str(music), "--store", str(store)], env, tmp_path).returncode == 0
    photos = [write_photo(tmp_path / f"p{i}.jpg", size=(480 + 40 * i, 360), color=(30 * i, 200 - 20 * i, 90)).read_bytes()
              for i in range(CLIENTS)]
    answers: list[tuple[int, dict]] = []
    errors: list[BaseException] = []
    lock = threading.Lock()

    with serving(store, env, tmp_path) as url:
        deadline = time.monotonic() + SECONDS

        def client(i: int) -> None:
            try:
                while time.monotonic() < deadline:
                    answer = post_multipart(url + "/api/recommend", {"image": (f"p{i}.jpg", photos[i])}, {"top": "5"})
                    with lock:
                        answers.append(answer)
            except BaseException as exc:  # noqa: BLE001  (reported below)
                errors.append(exc)

        threads = [threading.Thread(target=client, args=(i,)) for i in range(CLIENTS)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=SECONDS + 120)

    assert not errors, errors[:3]
    assert len(answers) >= CLIENTS * 2  # every client got through several requests
    for status, body in answers:
        assert status == 200, body
        assert body["caption"] and body["moods"] and len(body["songs"]) == 5
        assert all(song["audio_url"].startswith("/audio/") for song in body["songs"])
