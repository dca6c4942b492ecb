"""bench.compare pairs two suite runs on (set, fold, seed) and tells a gain from the seeds' noise."""

from __future__ import annotations

import json
import sys

import pytest

from bench import compare


def suite_file(path, scores: dict[tuple[str, int, int], tuple[float, float]]):
    runs = [{"set": s, "fold": f, "seed": seed, "macro_f1": m, "event_f1": e}
            for (s, f, seed), (m, e) in scores.items()]
    path.write_text(json.dumps({"conditions": "test", "summary": {}, "runs": runs}))
    return path


def test_a_steady_gain_is_shown_and_a_swing_is_not() -> None:
    steady = compare.paired([0.90, 0.91, 0.92, 0.93], [0.92, 0.93, 0.93, 0.95])
    assert steady.mean == pytest.approx(0.0175)
    assert (steady.better, steady.worse, steady.runs) == (4, 0, 4)
    assert 0 < steady.low <= steady.mean <= steady.high
    assert steady.shown == "gain"
    swing = compare.paired([0.90, 0.90, 0.90, 0.90], [0.95, 0.85, 0.96, 0.84])
    assert swing.low < 0 < swing.high and swing.shown == "no clear change"
    assert compare.paired([0.9, 0.8], [0.8, 0.7]).shown == "loss"
    same = compare.paired([0.9, 0.8], [0.9, 0.8])
    assert (same.better, same.worse, same.mean) == (0, 0, 0.0) and str(same).endswith("(0 better, 0 worse, 2 same)")
    with pytest.raises(ValueError, match="no paired runs"):
        compare.paired([], [])


def test_runs_pair_on_set_fold_and_seed_and_the_rest_are_left_out(tmp_path) -> None:
    before = compare.runs_of(suite_file(tmp_path / "a.json", {
        ("gunpoint", 0, 0): (0.90, 0.80), ("gunpoint", 1, 0): (0.92, 0.85), ("arrowhead", 0, 0): (0.8, 0.7),
    }))
    after = compare.runs_of(suite_file(tmp_path / "b.json", {
        ("gunpoint", 1, 0): (0.95, 0.85), ("gunpoint", 0, 0): (0.91, 0.80), ("gunpoint", 2, 0): (0.1, 0.1),
    }))
    result = compare.compare(before, after)
    assert list(result) == ["gunpoint"]  # arrowhead has no pair; fold 2 neither
    assert result["gunpoint"]["macro_f1"].runs == 2
    assert result["gunpoint"]["macro_f1"].mean == pytest.approx(0.02)
    assert result["gunpoint"]["event_f1"].mean == pytest.approx(0.0)
    assert compare.compare(before, after, ["arrowhead"]) == {}


def test_the_command_prints_one_line_per_set_and_score(tmp_path, monkeypatch, capsys) -> None:
    a = suite_file(tmp_path / "a.json", {("italypower", f, s): (0.92, 0.88) for f in range(3) for s in range(3)})
    b = suite_file(tmp_path / "b.json", {("italypower", f, s): (0.93 + 0.001 * f, 0.88) for f in range(3)
                                         for s in range(3)})
    monkeypatch.setattr(sys, "argv", ["bench.compare", str(a), str(b)])
    compare.main()
    lines = capsys.readouterr().out.splitlines()
    assert lines[1].startswith("italypower") and "macro_f1 +0.011" in lines[1] and lines[1].endswith("gain")
    assert "event_f1 +0.000" in lines[2] and lines[2].endswith("no clear change")
    monkeypatch.setattr(sys, "argv", ["bench.compare", str(a), str(suite_file(tmp_path / "c.json", {}))])
    with pytest.raises(SystemExit, match="share no"):
        compare.main()
