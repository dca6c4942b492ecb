"""training.EarlyStop on hand-made validation curves: where it stops and which epoch it keeps."""

from segmenter.learning.training import EarlyStop


def run(rule: EarlyStop, losses: list[float], met: list[bool]) -> tuple[int, int, str | None]:
    """(kept epoch, last epoch, reason) of ``rule`` fed these epochs."""
    for epoch, (loss, ok) in enumerate(zip(losses, met), 1):
        rule.record(epoch, loss, ok)
        if rule.reason() is not None:
            return rule.best_epoch, epoch, rule.reason()
    return rule.best_epoch, len(losses), None


def test_a_plateau_stops_after_patience_once_met_and_six_times_that_before():
    losses = [1.0, 0.5] + [0.6] * 50
    assert run(EarlyStop(5), losses, [True] * 52)[:2] == (2, 7)
    kept, last, why = run(EarlyStop(5), losses, [False] * 52)
    assert (kept, last) == (2, 32)
    assert why == "thresholds not met, no validation-loss improvement for 30 epochs"


def test_an_unmet_patience_of_its_own_replaces_six_times_patience():
    losses = [1.0, 0.5] + [0.6] * 50
    assert run(EarlyStop(5, 12), losses, [False] * 52)[:2] == (2, 14)
    assert run(EarlyStop(5, 12), losses, [True] * 52)[:2] == (2, 7)  # once met, patience alone


def test_a_met_checkpoint_beats_a_lower_loss_and_meeting_late_stops_at_once():
    losses = [1.0, 0.4] + [0.5] * 10
    met = [False] * 8 + [True] * 4  # met first at epoch 9, seven epochs after the lowest loss
    kept, last, why = run(EarlyStop(5), losses, met)
    assert (kept, last) == (9, 9)
    assert why.startswith("thresholds met")
    assert run(EarlyStop(5, 6), losses, [False] * 12)[:2] == (2, 8)


def test_improvements_below_a_ten_thousandth_do_not_reset_patience():
    losses = [1.0, 0.99995, 0.99993, 0.99992, 0.9999]
    assert run(EarlyStop(3), losses, [True] * 5)[:2] == (4, 4)  # epoch 4 the lowest, yet none improved
