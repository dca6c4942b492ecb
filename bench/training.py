"""Training time to early stop on 50,000 rows x 4 channels with the default settings.

    .venv/bin/python -m bench.training [--rows 50000] [--tasks 5]

Target (README, Benchmarks): <= 60 s on 2 cores.  Prints the time, the epochs run, why
training stopped and the validation scores.
"""

from __future__ import annotations

import argparse
import json
import time

from harness import synthetic
from segmenter.config import Settings, bootstrap
from segmenter.learning.training import train_project


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=50_000)
    parser.add_argument("--tasks", type=int, default=5)
    args = parser.parse_args()
    settings = bootstrap(Settings.from_env())
    per_task = args.rows // args.tasks
    tasks, files = synthetic.annotated_tasks(args.tasks, per_task, channels=4, n_events=per_task // 500,
                                             spikes=per_task // 2000)
    started = time.perf_counter()
    config = synthetic.label_config(channels=4, with_spikes=True)
    [model] = train_project(config, tasks, files, settings.training)
    elapsed = time.perf_counter() - started
    print(f"{args.rows} rows x 4 channels in {args.tasks} tasks: trained in {elapsed:.1f} s, "
          f"{model.info['epochs']} epochs (best {model.info['best_epoch']}), {model.info['stopped_because']}")
    print(json.dumps(model.info["validation"]))


if __name__ == "__main__":
    main()
