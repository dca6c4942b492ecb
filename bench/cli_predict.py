"""A command-line predict as a whole process: ``python -m segmenter predict`` on one task of a
1,000,000-row, 2-channel CSV, timed from the process start to its exit (imports included).

    .venv/bin/python -m bench.cli_predict [--rows 1000000] [--repeat 3]

Also times ``import segmenter.cli`` alone, and checks that predicting imported none of
scikit-learn, matplotlib and label-studio-sdk.  Target (docs/benchmarks.md): <= 3.5 s on 2 cores.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def prepare(folder: Path, rows: int) -> list[str]:
    """A trained model under ``folder/models``, the config, one task with its CSV; the predict command."""
    from bench.speed import model
    from harness import synthetic
    from segmenter import store

    store.save(folder / "models", "0", [model()])
    (folder / "config.xml").write_text(synthetic.label_config())
    synthetic.make_recording(rows, seed=7, n_events=max(1, rows // 2000)).frame.to_csv(folder / "rec.csv", index=False)
    (folder / "tasks.json").write_text(json.dumps([{"id": 1, "data": {"csv_url": "rec.csv"}}]))
    return [sys.executable, "-m", "segmenter", "predict", "--label-config", str(folder / "config.xml"),
            "--tasks", str(folder / "tasks.json"), "--model-dir", str(folder / "models"),
            "--out", str(folder / "out.json")]


def timed(command: list[str]) -> float:
    started = time.perf_counter()
    subprocess.run(command, cwd=ROOT, check=True, capture_output=True)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        command = prepare(folder, args.rows)
        runs = [timed(command) for _ in range(args.repeat)]
        regions = len(json.loads((folder / "out.json").read_text())[0]["predictions"][0]["result"])
        imports = [timed([sys.executable, "-c", "import segmenter.cli"]) for _ in range(args.repeat)]
        probe = ("import sys, runpy; sys.argv = ['segmenter'] + sys.argv[1:]; "
                 "import segmenter.cli as c; code = c.main(sys.argv[1:]); "
                 "print(sorted(m for m in ('sklearn', 'matplotlib', 'label_studio_sdk') if m in sys.modules))")
        heavy = subprocess.run([sys.executable, "-c", probe, *command[3:]], cwd=ROOT, check=True,
                               capture_output=True, text=True).stdout.strip().splitlines()[-1]
    print(json.dumps({"rows": args.rows, "predict_s": [round(r, 2) for r in runs], "best_s": round(min(runs), 2),
                      "import_cli_s": round(min(imports), 2), "regions": regions, "heavy_imports": heavy}))


if __name__ == "__main__":
    main()
