"""The progress line: one line per round once every site has reported it, with the figures the board cannot chart."""
from __future__ import annotations

from fate_components.ops import runner
from fate_components.ops.jobs import Site

SITES = [Site("hospital_a", "guest", "9999", {}), Site("hospital_b", "host", "10000", {}),
         Site("coordinator", "arbiter", "9999", {})]


def _history(rounds: int, *, dp: bool) -> dict[str, dict[int, float]]:
    h = {"train_loss": {r: 0.5 - 0.1 * r for r in range(rounds)}, "val_auc": {r: 0.8 for r in range(rounds)},
         "bytes_sent": {r: 1.25e6 for r in range(rounds)}, "global_val_loss": {r: 0.4 for r in range(rounds)}}
    if dp:
        h["epsilon"] = {r: 0.5 * (r + 1) for r in range(rounds)}
    return h


def test_progress_prints_complete_rounds_with_auc_epsilon_and_bytes(monkeypatch):
    # Prepare: hospital_a has reported two rounds, hospital_b one (its second is not complete yet).
    reported = {"9999": _history(2, dp=True), "10000": _history(1, dp=False)}
    monkeypatch.setattr(runner, "step_metrics", lambda client, job, role, party, task: reported[party])
    lines: list[str] = []
    progress = runner.RoundProgress(None, "job", "trainer", SITES, rounds=2, printer=lines.append)
    # Execute
    progress.poll()
    # Assert: only round 1, with each site's loss, the validation AUCs, epsilon (or -) and MB sent.
    assert lines == ["[Round 1/2] hospital_a loss: 0.500 | hospital_b loss: 0.500 | global val loss: 0.400 "
                     "| val AUC: 0.80, 0.80 | epsilon: 0.50, - | MB sent: 1.25, 1.25"]
    reported["10000"] = _history(2, dp=False)
    progress.poll()
    assert len(lines) == 2 and lines[1].startswith("[Round 2/2] hospital_a loss: 0.400")
