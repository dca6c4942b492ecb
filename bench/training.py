"""Training time to early stop on 50,000 rows x 4 channels with the default settings.

    .venv/bin/python bench/training.py [--rows 50000] [--tasks 5]

Target (issue 2): <= 60 s on 2 cores.  Prints the time, the epochs run, why
training stopped and the validation scores.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from segmenter import synthetic  # noqa: E402
from segmenter.config import Settings, bootstrap  # noqa: E402
from segmenter.training import train_project  # noqa: E402


class Files:
    def __init__(self, files: dict[str, bytes]) -> None:
        self.files = files

    def fetch(self, ref: str, task_id: object = None) -> bytes:
        return self.files[ref]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=50_000)
    parser.add_argument("--tasks", type=int, default=5)
    args = parser.parse_args()
    settings = bootstrap(Settings.from_env())
    per_task = args.rows // args.tasks
    files, tasks = {}, []
    for i in range(args.tasks):
        rec = synthetic.make_recording(per_task, seed=i, channels=4, n_events=per_task // 500, spikes=per_task // 2000)
        files[f"r{i}"] = rec.frame.to_csv(index=False).encode()
        result = synthetic.regions(rec.events, rec.frame["time"].to_numpy())
        tasks.append({"id": i + 1, "data": {"csv_url": f"r{i}"}, "annotations": [{"result": result}]})
    started = time.perf_counter()
    config = synthetic.label_config(channels=4, with_spikes=True)
    [model] = train_project(config, tasks, Files(files), settings.training)
    elapsed = time.perf_counter() - started
    print(f"{args.rows} rows x 4 channels in {args.tasks} tasks: trained in {elapsed:.1f} s, "
          f"{model.info['epochs']} epochs (best {model.info['best_epoch']}), {model.info['stopped_because']}")
    print(json.dumps(model.info["validation"]))


if __name__ == "__main__":
    main()
