"""bench.patience's replay: a network trained with a smaller patience keeps the very checkpoint the
replay of a longer training picks, so one training per run scores every patience exactly."""

import torch

from bench.patience import recorded_training
from bench.suite import Fold
from harness import synthetic
from segmenter.config import TrainingSettings
from segmenter.learning.training import train_project


def test_a_smaller_patience_keeps_the_checkpoint_the_replay_picks():
    tasks, files = synthetic.annotated_tasks(4, 400, seed=3, n_events=3)
    data = Fold(synthetic.label_config(), tasks, [], files)
    long, curves = recorded_training(data, TrainingSettings(seed=0, epochs=40, patience=6))
    members = long.net.members
    assert len(curves) == len(members) == 3
    assert [c.stop("6")[0] for c in curves] == [e["best_epoch"] for e in long.info["ensemble"]]
    assert [c.stop("6")[1] for c in curves] == [len(c.losses) for c in curves]  # it stopped where recorded

    [short] = train_project(data.config, data.train, data.files, TrainingSettings(seed=0, epochs=40, patience=2))
    stops = [c.stop("2") for c in curves]
    assert any(last < len(c.losses) for c, (_, last) in zip(curves, stops))  # the replay stopped some earlier
    for net, curve, (kept, _) in zip(short.net.members, curves, stops):
        for name, value in net.state_dict().items():
            torch.testing.assert_close(value, curve.states[kept - 1][name], rtol=0, atol=0)
