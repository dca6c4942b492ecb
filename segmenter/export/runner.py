"""Apply an exported segmenter model anywhere: numpy and onnxruntime, nothing else.

An export (``python -m segmenter export`` or ``GET /export/<project>``) is a
folder holding ``manifest.json``, one ONNX network per target, this file and the
two pure-numpy modules it imports (``postprocess.py``, ``novelty.py``)::

    pip install numpy onnxruntime
    python runner.py EXPORT_DIR recording.csv > regions.json

or from Python, in the export folder (or as ``segmenter.export.runner``)::

    from runner import Runner
    model = Runner("EXPORT_DIR")                        # the only target; Runner(dir, "label") picks one
    regions, score = model.predict(values, time=None)   # values: (rows, channels) in manifest order
    regions, score = model.predict_csv("recording.csv")
    for probs in model.probabilities_stream(chunks):    # per-row probabilities, bounded memory
        ...

The regions are those ``/predict`` gives for the same series (the ``result``
list and the task ``score``): the same windows (twice the training window where
the series holds two, with the ``long`` graph), averaging, clean-up, scores,
layered labels and instants, because the clean-up code is the backend's own.
Memory: the network sees ``BATCH`` windows at a time; ``probabilities_stream``
holds at most a long window plus a chunk of rows, whatever the series' length.
Regions need the whole series' per-row probabilities (``rows x classes``
float32), as in the backend, since the clean-up looks both ways along it.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from itertools import chain, islice
from pathlib import Path

import numpy as np
import onnxruntime

if __package__:  # segmenter.export.runner, inside the package
    from segmenter import postprocess
    from segmenter.learning import novelty
else:  # runner.py in an export folder, beside its copies of these two
    import novelty
    import postprocess

BATCH = 512  # windows per network call
CSV_CHUNK_ROWS = 200_000
_SEPARATORS = {"tab": "\t", "\\t": "\t", "space": None, " ": None, "comma": ",", "dot": "."}
_SNIFFED = (",", ";", "\t", "|", " ")


@dataclass(frozen=True)
class Grid:
    """One way the backend cuts a series: a graph for windows of ``window`` rows, ``stride`` apart."""

    session: onnxruntime.InferenceSession
    window: int
    stride: int


class Runner:
    """One target of an export: its network, normalisation, windows and clean-up.

    ``threads``: onnxruntime's intra-op threads; one by default, as the backend gives
    torch (``TORCH_THREADS``): on busy cores more threads spin and slow it down
    (``python -m bench.export``); 0 lets onnxruntime use every core.
    """

    def __init__(self, folder: str | Path, target: str | None = None, threads: int = 1) -> None:
        folder = Path(folder)
        manifest = json.loads((folder / "manifest.json").read_text())
        specs = manifest["targets"]
        names = [s["from_name"] for s in specs]
        if target is None and len(specs) != 1:
            raise ValueError(f"the export holds targets {names}: name one")
        spec = specs[0] if target is None else next((s for s in specs if s["from_name"] == target), None)
        if spec is None:
            raise ValueError(f"no target {target!r} in the export (targets: {names})")
        self.manifest, self.spec = manifest, spec
        self.window = int(spec["window"])  # the training window (the novelty score's too)
        self.mean = np.asarray(spec["normalise"]["mean"], np.float32)
        self.std = np.asarray(spec["normalise"]["std"], np.float32)
        self.classes = ("__background__", *spec["labels"])
        self.instants = frozenset(self.classes.index(label) for label in spec["instant_labels"])
        self.control = postprocess.Control(spec["from_name"], spec["to_name"], tuple(spec["labels"]))
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = threads

        def grid(part: dict) -> Grid:
            session = onnxruntime.InferenceSession(str(folder / part["onnx"]), options,
                                                   providers=["CPUExecutionProvider"])
            return Grid(session, int(part["window"]), int(part["stride"]))

        self.short = grid(spec)
        self.long = grid(spec["long"]) if "long" in spec else None  # exports before long windows: none
        reference = spec.get("novelty")
        self.reference = None if reference is None else novelty.Reference.from_state(reference)

    @property
    def channels(self) -> list[str]:
        """The columns the network reads, in the order ``values`` must hold them."""
        return list(self.spec["channels"])

    def normalise(self, values: np.ndarray) -> np.ndarray:
        """Channels scaled with the training data's statistics, as the backend does."""
        return ((np.asarray(values, np.float32) - self.mean) / self.std).astype(np.float32, copy=False)

    def _add(self, grid: Grid, rows: np.ndarray, starts: np.ndarray, sums: np.ndarray, counts: np.ndarray) -> None:
        """Run the ``grid`` windows of ``rows`` at ``starts`` and add their probabilities to the rows they cover.

        Windows ``stride`` >= half a window apart: the even ones never overlap each
        other, nor the odd ones, so each half is one vectorised add, and a row's
        sum is the same as adding the windows one after another.
        """
        offsets = np.arange(grid.window)
        for i in range(0, len(starts), BATCH):
            chunk = starts[i : i + BATCH]
            index = chunk[:, None] + offsets[None, :]
            probs = grid.session.run(None, {self.spec["input"]: rows[index]})[0]
            for half in (slice(0, None, 2), slice(1, None, 2)):
                sums[index[half]] += probs[half]
                counts[index[half]] += 1.0

    def probabilities_stream(self, chunks: Iterable[np.ndarray]) -> Iterator[np.ndarray]:
        """Per-row probabilities of the series made of ``chunks`` (raw values, ``(rows, channels)`` each).

        Yields them in order as soon as no later window can touch them: windows
        every ``stride`` rows from row 0, plus one aligned to the end (a series
        shorter than a window: one window, padded), as the backend cuts them.
        The backend's long windows need a series of at least one long window: the
        rows are held until that many have come (or the series has ended).
        """
        grid, chunks = self.short, iter(chunks)
        if self.long is not None:
            head, held = [], 0
            for chunk in chunks:
                head.append(chunk)
                held += np.asarray(chunk).size // len(self.mean)
                if held >= self.long.window:
                    grid = self.long
                    break
            chunks = chain(head, chunks)
        yield from self._stream(grid, chunks)

    def _stream(self, grid: Grid, chunks: Iterable[np.ndarray]) -> Iterator[np.ndarray]:
        """``probabilities_stream`` on the windows of ``grid``."""
        size, stride, width = grid.window, grid.stride, len(self.spec["outputs"])
        rows = np.zeros((0, len(self.mean)), np.float32)  # normalised rows from ``base`` on
        sums, counts = np.zeros((0, width), np.float32), np.zeros((0, 1), np.float32)
        base = seen = next_start = 0
        for chunk in chunks:
            chunk = self.normalise(chunk).reshape(-1, len(self.mean))
            rows = np.concatenate([rows, chunk])
            sums = np.concatenate([sums, np.zeros((len(chunk), width), np.float32)])
            counts = np.concatenate([counts, np.zeros((len(chunk), 1), np.float32)])
            seen += len(chunk)
            if seen - size >= next_start:
                starts = np.arange(next_start, seen - size + 1, stride, dtype=np.int64)
                self._add(grid, rows, starts - base, sums, counts)
                next_start = int(starts[-1]) + stride
            done = max(base, min(next_start, seen - size))
            if done > base:
                yield sums[: done - base] / counts[: done - base]
                rows, sums, counts = rows[done - base :], sums[done - base :], counts[done - base :]
                base = done
        if seen == 0:
            return
        if seen < size:  # one window, padded with zeros after normalisation
            padded = np.zeros((size, len(self.mean)), np.float32)
            padded[: len(rows)] = rows
            pad_sums = np.zeros((size, width), np.float32)
            pad_counts = np.zeros((size, 1), np.float32)
            self._add(grid, padded, np.zeros(1, np.int64), pad_sums, pad_counts)
            yield pad_sums[:seen] / pad_counts[:seen]
            return
        if next_start - stride != seen - size:  # the window aligned to the end
            self._add(grid, rows, np.array([seen - size - base], np.int64), sums, counts)
        yield sums / counts

    def probabilities(self, values: np.ndarray) -> np.ndarray:
        """Per-row probabilities ``(rows, outputs)`` of a whole series (``outputs`` as the manifest lists them)."""
        parts = list(self.probabilities_stream([values]))
        return np.concatenate(parts) if parts else np.zeros((0, len(self.spec["outputs"])), np.float32)

    def regions(
        self, probs: np.ndarray, time: np.ndarray | None = None, time_text: np.ndarray | None = None,
        values: np.ndarray | None = None,
    ) -> tuple[list[dict], float]:
        """Label Studio regions and the task score from per-row probabilities, as ``/predict`` makes them.

        ``time``: the time column's numbers (epoch milliseconds for datetimes), which
        set the clean-up's durations in rows; ``time_text``: a datetime column's cells,
        written back as the regions' start and end; ``values`` (raw): for the task
        score's novelty part, as the backend computes it.
        """
        kind = self.spec["time"]["kind"]
        if kind != "index" and time is None:
            raise ValueError(f"this model reads a time column ({self.spec['time']['column']!r}): give its values")
        if kind == "datetime" and time_text is None:
            raise ValueError("this model's time column holds datetimes: give their text as time_text")
        cleanup = self.spec["cleanup"]
        rules = [(_duration(r["min_duration"]), _duration(r["merge_gap"])) for r in cleanup["rules"]]
        spacing = postprocess.spacing_of(np.arange(len(probs)) if time is None else time, kind)
        row_cleanup = postprocess.RowCleanup.of_rules(
            rules, spacing, int(cleanup["auto_min_rows"]), float(cleanup["score_threshold"])
        )
        make = postprocess.layered_regions if self.spec["layered"] else postprocess.regions
        found, score = make(probs, self.control, self.instants, row_cleanup, _axis(kind, time, time_text))
        if self.reference is not None and values is not None and len(values):
            familiar = self.reference.familiarity(self.normalise(values), self.window)
            score = min(score, postprocess.task_score(familiar))
        return found, score

    def predict(
        self, values: np.ndarray, time: np.ndarray | None = None, time_text: np.ndarray | None = None
    ) -> tuple[list[dict], float]:
        """Regions and task score of one series: ``values`` ``(rows, channels)`` in ``channels`` order."""
        values = np.asarray(values, np.float32)
        return self.regions(self.probabilities(values), time, time_text, values)

    def read_csv(self, path: str | Path) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
        """``(values, time, time_text)`` of a CSV file with a header row, parsed ``CSV_CHUNK_ROWS`` lines at a time.

        Columns are found by name (case-insensitive) or position; missing cells are
        filled forward, then backward, as the backend reads them.  Datetime cells
        are read with numpy's ISO 8601 parser (the runner has no d3 time parser).
        """
        t = self.spec["time"]
        with open(path, encoding="utf-8-sig") as f:
            header = f.readline()
            sep = _separator(t["sep"], header, f)
            names = [n.strip().strip('"').strip().lower() for n in header.rstrip("\r\n").split(sep)]
            channel_cols = [_column(names, c) for c in self.channels]
            time_col = None if t["column"] is None else _column(names, t["column"])
            numeric_time = time_col is not None and t["kind"] != "datetime"  # parsed with the channels
            columns = channel_cols + ([time_col] if numeric_time else [])
            values, texts = [], []
            while lines := list(islice(f, CSV_CHUNK_ROWS)):
                values.append(_numbers(lines, sep, columns))
                if time_col is not None and not numeric_time:
                    texts.append(np.loadtxt(lines, delimiter=sep, usecols=[time_col], dtype=str, ndmin=1,
                                            quotechar='"', comments=None))
        table = np.concatenate(values) if values else np.zeros((0, len(columns)), np.float64)
        data = _filled(table[:, : len(channel_cols)].astype(np.float32))
        if time_col is None:
            return data, None, None
        if numeric_time:
            return data, table[:, -1], None
        text = np.char.strip(np.concatenate(texts))
        return data, np.array(text, dtype="datetime64[ms]").astype(np.int64).astype(np.float64), text

    def predict_csv(self, path: str | Path) -> tuple[list[dict], float]:
        """Regions and task score of a CSV file (see ``read_csv``)."""
        values, time, text = self.read_csv(path)
        return self.predict(values, time, text)


def _duration(d: dict | None) -> postprocess.Duration | None:
    return None if d is None else postprocess.Duration(float(d["amount"]), bool(d["in_rows"]))


def _axis(kind: str, time: np.ndarray | None, text: np.ndarray | None) -> postprocess.Axis:
    """A row's position as the Label Studio UI writes it (``segmenter.learning.regions`` for the backend)."""
    if kind == "index":
        return int
    if kind == "datetime":
        return lambda row: str(text[row])

    def number(row: int) -> object:
        v = float(time[row])
        return int(v) if v.is_integer() else v

    return number


def _separator(sep: str, header: str, f: Iterable[str]) -> str | None:
    """The CSV separator the manifest names (``None``: any whitespace); ``auto`` picks the one
    that splits the header and the next line alike, as Label Studio does."""
    if sep != "auto":
        return _SEPARATORS.get(sep, sep[:1] or ",")
    position = f.tell() if hasattr(f, "tell") else None
    second = next(iter(f), "")
    if position is not None:
        f.seek(position)
    for candidate in _SNIFFED:
        if candidate in header and header.count(candidate) == second.count(candidate):
            return None if candidate == " " else candidate
    return ","


def _column(names: list[str], wanted: str) -> int:
    key = wanted.strip().lower()
    if key in names:
        return names.index(key)
    if key.isdigit() and int(key) < len(names):
        return int(key)
    raise ValueError(f"no column {wanted!r} in the CSV (columns: {names})")


def _numbers(lines: list[str], sep: str | None, columns: list[int]) -> np.ndarray:
    """Some columns of some lines as float64; empty or ``NaN``-like cells as NaN."""
    try:
        return np.loadtxt(lines, delimiter=sep, usecols=columns, ndmin=2, quotechar='"', comments=None)
    except ValueError:  # empty cells: the slower parser that reads them as missing
        return np.genfromtxt(lines, delimiter=sep, usecols=columns, dtype=np.float64, comments=None,
                             missing_values=("", "null", "None", "NA", "N/A"), filling_values=np.nan, ndmin=2)


def _filled(values: np.ndarray) -> np.ndarray:
    """Missing values filled forward, then backward; a channel without any value becomes 0."""
    values[~np.isfinite(values)] = np.nan
    rows = np.arange(len(values))[:, None]
    last = np.maximum.accumulate(np.where(np.isnan(values), -1, rows), axis=0)
    forward = np.where(last >= 0, values[np.maximum(last, 0), np.arange(values.shape[1])], np.nan)
    nxt = np.minimum.accumulate(np.where(np.isnan(forward), len(values), rows)[::-1], axis=0)[::-1]
    found = nxt < len(values)
    filled = np.where(found, forward[np.minimum(nxt, len(values) - 1), np.arange(values.shape[1])], 0.0)
    return filled.astype(np.float32)


def main(argv: list[str] | None = None) -> int:
    """``python runner.py EXPORT_DIR FILE.csv [--target NAME]``: the regions as JSON on stdout."""
    parser = argparse.ArgumentParser(description="Apply an exported segmenter model to a CSV file.")
    parser.add_argument("export", type=Path, help="the export folder (holds manifest.json)")
    parser.add_argument("csv", type=Path, help="a CSV file with a header row")
    parser.add_argument("--target", help="the control (from_name) to predict when the export holds several")
    parser.add_argument("--threads", type=int, default=1, help="onnxruntime's threads (default 1; 0: every core)")
    args = parser.parse_args(argv)
    try:
        runner = Runner(args.export, args.target, args.threads)
        found, score = runner.predict_csv(args.csv)
    except (OSError, ValueError, KeyError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    json.dump({"result": found, "score": round(score, 4), "model_version": runner.manifest["version"]}, sys.stdout)
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
