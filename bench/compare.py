"""Two bench.suite runs side by side, run for run: is a change's gain larger than the seeds' noise?

    .venv/bin/python -m bench.compare BEFORE.json AFTER.json [--sets italypower japanesevowels ...]

Reads the ``--json`` files of two ``bench.suite`` runs and pairs their runs on (set, fold,
seed): the same recordings and the same seed, trained once with each code.  Per set it
prints the mean difference (after - before) of timestep macro-F1 and of event F1@IoU0.5,
a 90% bootstrap interval of that mean (the pairs resampled), and how many runs got
better, worse or stayed.

Why: a suite set's test fold holds a few dozen events (ItalyPowerDemand 24-31), so one
event moves a run's event F1 by about 0.035, and the worst of nine runs moves with it.
A change whose interval spans 0 has not shown a gain, whatever its worst run did.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

RESAMPLES = 10_000
LEVEL = 0.90
SAME = 1e-9  # differences this small count as unchanged


@dataclass(frozen=True)
class Paired:
    """One set's paired differences (after - before) of one score."""

    runs: int
    mean: float
    low: float  # the bootstrap interval of the mean
    high: float
    better: int
    worse: int

    def __str__(self) -> str:
        same = self.runs - self.better - self.worse
        return (f"{self.mean:+.3f} [{self.low:+.3f}, {self.high:+.3f}] "
                f"({self.better} better, {self.worse} worse, {same} same)")

    @property
    def shown(self) -> str:
        """Whether the interval leaves 0 out: "gain", "loss", or "no clear change"."""
        if self.low > 0:
            return "gain"
        if self.high < 0:
            return "loss"
        return "no clear change"


def paired(before: np.ndarray, after: np.ndarray, seed: int = 0) -> Paired:
    """The mean of ``after - before`` with its bootstrap interval (``RESAMPLES`` resamples of the pairs)."""
    diff = np.asarray(after, dtype=np.float64) - np.asarray(before, dtype=np.float64)
    if len(diff) == 0:
        raise ValueError("no paired runs to compare")
    picks = np.random.default_rng(seed).integers(0, len(diff), (RESAMPLES, len(diff)))
    means = diff[picks].mean(axis=1)
    tail = (1 - LEVEL) / 2 * 100
    low, high = np.percentile(means, [tail, 100 - tail])
    return Paired(len(diff), float(diff.mean()), float(low), float(high),
                  int((diff > SAME).sum()), int((diff < -SAME).sum()))


def runs_of(path: Path) -> dict[tuple[str, int, int], dict]:
    """The runs of a ``bench.suite --json`` file, by (set, fold, seed)."""
    runs = json.loads(path.read_text())["runs"]
    return {(r["set"], r["fold"], r["seed"]): r for r in runs}


def compare(before: dict, after: dict, sets: list[str] | None = None) -> dict[str, dict[str, Paired]]:
    """Per set (``sets``, else every set both hold), the paired macro-F1 and event F1 differences."""
    shared = sorted(set(before) & set(after))
    keys = sets or sorted({k[0] for k in shared})
    out = {}
    for key in keys:
        pairs = [k for k in shared if k[0] == key]
        if not pairs:
            continue
        out[key] = {
            metric: paired([before[k][metric] for k in pairs], [after[k][metric] for k in pairs])
            for metric in ("macro_f1", "event_f1")
        }
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("before", type=Path)
    parser.add_argument("after", type=Path)
    parser.add_argument("--sets", nargs="+")
    args = parser.parse_args()
    result = compare(runs_of(args.before), runs_of(args.after), args.sets)
    if not result:
        raise SystemExit("the two files share no (set, fold, seed) run")
    print(f"after - before, mean over paired runs [{LEVEL:.0%} bootstrap interval]")
    for key, scores in result.items():
        for metric, p in scores.items():
            print(f"{key:16s} {metric:8s} {p}  {p.shown}")


if __name__ == "__main__":
    main()
