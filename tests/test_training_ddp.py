"""`train blip --processes 2`: two CPU processes (torchrun, gloo) compute the steps one process computes
on the same global batch, write each checkpoint once, and resume from the saved step."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from conftest import run_cli
from media_captions import write_captioned_images, write_table

PARAMETER_TOLERANCE = 1e-5  # max |Δ| of any weight after 3 AdamW steps at lr 1e-3 (measured 8e-8 and, in CI, 2e-6: float
# sums in another order, which Adam scales up where a gradient is near zero; the weights move 3e-3)


@pytest.fixture(scope="module")
def pairs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Twelve photos whose captions differ in length (so the tokens a process holds differ too)."""
    root = tmp_path_factory.mktemp("ddp-data")
    rows = write_captioned_images(root / "images", per_category=2)[:12]
    return write_table(root / "pairs.csv", rows)


def _train(pairs: Path, out: Path, env: dict[str, str], cwd: Path, *extra: str):
    args = ["train", "blip", str(pairs), "--images", str(pairs.parent / "images"), "--out", str(out),
            "--epochs", "5", "--lr", "1e-3", "--image-size", "model", "--no-bf16", "--seed", "3", *extra]
    result = run_cli(args, {**env, "IMAGE2MOOD_THREADS": "1"}, cwd, timeout=240)
    assert result.returncode == 0, result.stderr[-8000:]
    return result


def _records(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


def test_two_processes_step_as_one_writes_once_and_resumes(pairs: Path, tiny_models: Path, cli_env: dict[str, str],
                                                          tmp_path: Path) -> None:
    one = _train(pairs, tmp_path / "one", cli_env, tmp_path, "--batch-size", "4", "--max-steps", "3")
    assert "global batch 4 pairs a step (4 per process × 1 accumulated × 1 processes), learning rate 0.001" in one.stderr

    two = tmp_path / "two"
    first = _train(pairs, two, cli_env, tmp_path, "--processes", "2", "--batch-size", "2", "--max-steps", "2",
                   "--save-every", "1")
    assert "global batch 4 pairs a step (2 per process × 1 accumulated × 2 processes)" in first.stderr
    assert first.stderr.count("global batch") == 1 and first.stdout.count(f"wrote {two} at step 2") == 1
    records = _records(two)
    assert [r["step"] for r in records if "checkpoint" in r] == [1, 2]  # once per save, by the main process
    assert [r["step"] for r in records if "train_loss" in r] == [1, 2]
    losses = {r["step"]: r["train_loss"] for r in _records(tmp_path / "one") if "train_loss" in r}
    assert abs(next(r["train_loss"] for r in records if r.get("step") == 1 and "train_loss" in r) - losses[1]) <= 1e-4

    resumed = _train(pairs, two, cli_env, tmp_path, "--processes", "2", "--batch-size", "2", "--max-steps", "3",
                     "--resume")
    assert "resuming at step 2 of 3" in resumed.stderr and f"wrote {two} at step 3" in resumed.stdout
    records = _records(two)
    assert [r["step"] for r in records if "train_loss" in r] == [1, 2, 3]
    assert [r["step"] for r in records if "checkpoint" in r] == [1, 2, 3]
    for step in (2, 3):
        mine = next(r["train_loss"] for r in records if r.get("step") == step and "train_loss" in r)
        assert abs(mine - losses[step]) <= 1e-4, (step, mine, losses[step])
    single, double = load_file(tmp_path / "one" / "model.safetensors"), load_file(two / "model.safetensors")
    assert single.keys() == double.keys()
    worst = max(float((single[k] - double[k]).abs().max()) for k in single)
    start = load_file(tiny_models / "blip" / "model.safetensors")
    moved = max(float((single[k] - start[k]).abs().max()) for k in single)
    assert worst <= PARAMETER_TOLERANCE < moved / 100, (worst, moved)


def test_resume_after_a_worker_is_killed(pairs: Path, cli_env: dict[str, str], tmp_path: Path) -> None:
    """SIGKILL the second process mid-run: torchrun stops the run, and --resume continues from the last
    checkpoint the main process wrote."""
    import signal
    import subprocess
    import time

    import psutil

    from conftest import CLI

    out = tmp_path / "killed"
    args = ["train", "blip", str(pairs), "--images", str(pairs.parent / "images"), "--out", str(out), "--epochs",
            "100", "--lr", "1e-3", "--image-size", "model", "--no-bf16", "--batch-size", "2", "--save-every", "2"]
    env = {**cli_env, "IMAGE2MOOD_THREADS": "1"}
    run = subprocess.Popen([CLI, *args, "--processes", "2"], env=env, cwd=tmp_path, stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        while not (out / "metrics.jsonl").is_file() or \
                not any("checkpoint" in r and r["step"] >= 4 for r in _records(out)):
            assert run.poll() is None and time.monotonic() < deadline, "no checkpoint at step 4"
            time.sleep(0.2)
        workers = [p for p in psutil.Process(run.pid).children(recursive=True)
                   if "image2mood_cli.main" in " ".join(p.cmdline()) and p.environ().get("RANK") == "1"]
        assert len(workers) == 1
        workers[0].send_signal(signal.SIGKILL)
        assert run.wait(timeout=120) != 0
    finally:
        if run.poll() is None:
            run.kill()
    saved = torch.load(out / "training-state.pt", weights_only=True)["step"]
    assert saved >= 4 and saved % 2 == 0
    resumed = _train(pairs, out, cli_env, tmp_path, "--processes", "2", "--batch-size", "2", "--save-every", "2",
                     "--max-steps", str(saved + 1), "--resume", "--epochs", "100")
    assert f"resuming at step {saved} of {saved + 1}" in resumed.stderr
    assert f"wrote {out} at step {saved + 1}" in resumed.stdout


# A one-process gloo world wraps the model in DDP as torchrun's workers do; the child says whether the wrapper
# was still alive when the group was destroyed (its reducer would then end the group later, holding the GIL
# that gloo's threads wait for), and whether a group is left for the interpreter's exit to tear down.
_CLOSE = """
import os, sys, weakref
from pathlib import Path
import torch
import torch.distributed as dist
from training.blip import BlipForConditionalGeneration, BlipProcessor, BlipTrainer, BlipTrainingConfig
from training.data import read_pairs, split
from training.metrics import MetricsLog

os.environ.update(RANK="0", LOCAL_RANK="0", WORLD_SIZE="1", LOCAL_WORLD_SIZE="1", MASTER_ADDR="127.0.0.1")
dist.init_process_group("gloo")
pairs, models, out = map(Path, sys.argv[1:4])
dataset = read_pairs(pairs, images=pairs.parent / "images")
train, valid = split(dataset.pairs, seed=0)
trainer = BlipTrainer(BlipForConditionalGeneration.from_pretrained(models / "blip"),
                      BlipProcessor.from_pretrained(models / "blip"), dataset, train, valid, out,
                      BlipTrainingConfig(epochs=1, batch_size=2, max_steps=1), torch.device("cpu"),
                      MetricsLog(out / "metrics.jsonl"), bf16=False, progress=False)
wrapper = weakref.ref(trainer.wrapped)
print(type(trainer.wrapped).__name__)
destroy = dist.destroy_process_group
def recording_destroy(*args, **kwargs):
    print("wrapper alive at destroy:", wrapper() is not None)
    destroy(*args, **kwargs)
dist.destroy_process_group = recording_destroy
trainer.close()
print("group left:", dist.is_initialized())
"""


def test_close_drops_the_ddp_wrapper_before_the_group(pairs: Path, tiny_models: Path, cli_env: dict[str, str],
                                                      tmp_path: Path) -> None:
    import subprocess
    import sys

    from conftest import free_port

    env = {**cli_env, "MASTER_PORT": str(free_port()), "IMAGE2MOOD_THREADS": "1"}
    child = subprocess.run([sys.executable, "-c", _CLOSE, str(pairs), str(tiny_models), str(tmp_path / "out")],
                           env=env, capture_output=True, text=True, timeout=120)
    assert child.returncode == 0, child.stderr[-4000:]
    assert child.stdout.splitlines() == ["DistributedDataParallel", "wrapper alive at destroy: False",
                                         "group left: False"], child.stdout
