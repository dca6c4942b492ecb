"""Time ``load_series`` on CSV bytes of 10k, 100k and 1M rows (time + 2 channels).

Run: ``.venv/bin/python -m bench.series_parse``. Prints the best of three runs for a numeric
time column, two datetime formats and no time column.
"""

from __future__ import annotations

import time

import numpy as np
import pandas as pd

from segmenter.reading.labelconfig import Target
from segmenter.reading.series import load_series

SIZES = (10_000, 100_000, 1_000_000)
CASES = {
    "numeric time": ("time", None),
    "datetime %Y-%m-%d %H:%M:%S.%L": ("time", "%Y-%m-%d %H:%M:%S.%L"),
    "datetime %m/%d/%Y %H:%M:%S": ("time", "%m/%d/%Y %H:%M:%S"),
    "no time column": (None, None),
}


def make_csv(rows: int, time_format: str | None, rng: np.random.Generator) -> bytes:
    """CSV bytes with a time column and two float channels."""
    if time_format is None:
        times: object = np.round(np.arange(rows) * 0.01, 2)
    else:
        stamps = pd.Series(pd.to_datetime(1_700_000_000_000 + np.arange(rows) * 1000, unit="ms"))
        micro = stamps.dt.strftime(time_format.replace("%L", "%f"))
        times = micro.str.replace(r"(\.\d{3})\d{3}$", r"\1", regex=True)
    frame = pd.DataFrame({"time": times, "a": rng.standard_normal(rows), "b": rng.standard_normal(rows)})
    return frame.to_csv(index=False, float_format="%.6f").encode()


def best_of(runs: int, raw: bytes, target: Target) -> float:
    best = float("inf")
    for _ in range(runs):
        start = time.perf_counter()
        load_series(raw, target)
        best = min(best, time.perf_counter() - start)
    return best


def main() -> None:
    rng = np.random.default_rng(0)
    print(f"{'case':34s} {'rows':>9s} {'MB':>6s} {'seconds':>8s}")
    for case, (time_column, time_format) in CASES.items():
        target = Target("label", "ts", "csv", "url", ("A",), ("a", "b"), time_column, time_format, ",")
        for rows in SIZES:
            raw = make_csv(rows, time_format, rng)
            seconds = best_of(3, raw, target)
            print(f"{case:34s} {rows:9d} {len(raw) / 1e6:6.1f} {seconds:8.3f}")


if __name__ == "__main__":
    main()
