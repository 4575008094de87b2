"""Progress bars in a terminal: one per inference phase, fed by the flow's progress; none
when the output is not a terminal."""

import io

import pytest
from rich.console import Console

from rap.flows.terminal import PhaseBars, TrainingBars, bars, terminal_progress
from test_flow import SIX, SMALL, run, scripted_easy_vqa
from rap.rap_core.io.spec import DataSpec


def test_no_bars_when_not_a_terminal():
    with terminal_progress(Console(file=io.StringIO())) as progress:
        assert progress is None


@pytest.mark.usefixtures("prefect_harness")
def test_a_run_moves_one_bar_per_phase_to_its_end(settings, tmp_path):
    from rap.flows import rap as flow_module
    console = Console(file=io.StringIO(), force_terminal=True, width=120)
    seen = []
    with terminal_progress(console) as progress:
        listener = PhaseBars(progress)
        flow_module.PROGRESS_LISTENERS.append(lambda todo, done: (seen.append(dict(done)),
                                                                listener(todo, done)))
        try:
            summary = run(data=DataSpec(limit=6), model=scripted_easy_vqa(tmp_path, SIX),
                          rollout=SMALL, track=False, export=False)
        finally:
            flow_module.PROGRESS_LISTENERS.clear()
    assert summary["samples_inferred"] == 6
    tasks = {t.description: (t.completed, t.total) for t in progress.tasks}
    # SIX's last sample has no right multimodal answer: no text-only rollouts for it
    assert tasks == {"text-only inference": (5, 5), "multimodal inference": (6, 6),
                     "attention inference": (6, 6)}
    assert seen[0] == {"multimodal": 0, "text-only": 0, "attention": 0}
    assert "text-only inference" in console.file.getvalue()


def test_training_bars_show_steps_and_loss():
    progress = bars(Console(file=io.StringIO(), force_terminal=True))
    report = TrainingBars(progress)
    report("vision", 0, 40, float("nan"))
    report("vision", 40, 40, 0.25)
    report("answers", 10, 100, 1.5)
    assert [(t.description, t.completed, t.total, t.fields["note"]) for t in progress.tasks] == [
        ("training (vision)", 40, 40, "loss 0.250"), ("training (answers)", 10, 100, "loss 1.500")]
