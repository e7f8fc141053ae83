"""Training metrics: one JSON object per line as they come, and a PNG plot of them at the end."""

from __future__ import annotations

import json
import time
from collections import defaultdict
from pathlib import Path
from typing import Any


class MetricsLog:
    """Appends records (``{"epoch": 1, "train_loss": ...}``) to a JSONL file, flushed per record."""

    def __init__(self, path: Path, append: bool = False) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        if not append:
            path.write_text("")

    def write(self, **record: Any) -> None:
        record = {"time": round(time.time(), 3), **record}
        with self.path.open("a", encoding="utf-8") as fh:
            fh.write(json.dumps(record, ensure_ascii=False) + "\n")

    def records(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.path.read_text(encoding="utf-8").splitlines() if line.strip()]

    def plot(self, target: Path, x: str) -> Path:
        """Plot every numeric series against ``x`` (losses on the left, the rest on the right) into a PNG."""
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        series: dict[str, list[tuple[float, float]]] = defaultdict(list)
        for record in self.records():
            if x not in record:
                continue
            for key, value in record.items():
                if key not in (x, "time") and isinstance(value, (int, float)) and not isinstance(value, bool):
                    series[key].append((record[x], value))
        figure, (losses, others) = plt.subplots(1, 2, figsize=(11, 4))
        for key, points in sorted(series.items()):
            axes = losses if "loss" in key else others
            axes.plot(*zip(*points), marker="." if len(points) < 50 else None, label=key)
        for axes, title in ((losses, "loss"), (others, "metrics")):
            axes.set_xlabel(x)
            axes.set_title(title)
            if axes.lines:
                axes.legend(fontsize="small")
        figure.tight_layout()
        figure.savefig(target, dpi=100)
        plt.close(figure)
        return target
