"""The IMP trunk as a loop of steps, and controls as registered classes.

The loop (`trunk.run`) and the runner's graph (`runner.run_graph`) call the same steps, so they
write the same masks; getters read and never train; a control registered in one place reaches the
config, the runner's graph, the plots and the report.
"""

from pathlib import Path

import pytest
import torch

from ticketlab import api
from ticketlab.core import masks as M
from ticketlab.core.errors import TicketlabError
from ticketlab.experiments.lottery import runner, trunk
from ticketlab.experiments.lottery.controls import CONTROLS, Control, branch_order, register
from ticketlab.experiments.lottery.trunk import LotteryConfig, load_masks
from ticketlab.training.loop import TrainConfig

torch.set_num_threads(1)

TRAIN = TrainConfig(dataset="mnist1d", model="mlp", model_args={"widths": [32, 16]}, iterations=100,
                    batch_size=50, eval_every=50)


def spec(path: Path, cfg: LotteryConfig) -> runner.Spec:
    return runner.Spec(TRAIN, cfg, str(path), None, checkpoint_every=50)


def files(root: Path, name: str) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob(name)}


def test_the_loop_and_the_runner_write_the_same_runs_and_masks(tmp_path):
    cfg = LotteryConfig(levels=2, replicates=2, rewind_iter=50, control_draws=2, control_levels=(2,),
                        controls=("reinit", "random_mask_global", "oneshot", "continued"))
    runner.run_graph(spec(tmp_path / "graph", cfg), stack=1, progress=False)
    for r in range(cfg.replicates):
        rep = runner.replicate(spec(tmp_path / "loop", cfg), r)
        assert len(trunk.run(rep, 2)) == 3
    graph, loop = tmp_path / "graph", tmp_path / "loop"
    masks = files(graph, "mask.pt")
    # 3 trunk levels + reinit ×2, random_mask_global ×2, oneshot, continued at level 2 + continued 1
    assert len(masks) == 2 * 10 and "replicate_1/continued/level_1/mask.pt" in masks
    assert files(loop, "mask.pt") == masks and files(loop, "summary.json") == files(graph, "summary.json")
    for f in masks:
        a, b = load_masks(graph / f), load_masks(loop / f)
        assert a.keys() == b.keys() and all(torch.equal(a[n], b[n]) for n in a), f
    # the loop's runs are the graph's nodes
    tasks = runner.graph(spec(graph, cfg))
    assert {str(t.run_dir(graph).relative_to(graph)) + "/mask.pt" for t in tasks} == masks


def test_getters_never_train(tmp_path):
    cfg = LotteryConfig(levels=2, controls=("oneshot", "continued"))
    rep = runner.replicate(spec(tmp_path, cfg), 0)
    with pytest.raises(TicketlabError, match="level 1 of replicate 0 is not pruned"):
        rep.masks(1)
    with pytest.raises(TicketlabError, match="not trained"):
        rep.trained_weights(0)
    with pytest.raises(TicketlabError, match="level 0 of replicate 0 has not been trained"):
        rep.rewind_state()
    with pytest.raises(TicketlabError, match="not trained"):  # pruning level 1 needs level 0 trained
        trunk.prune(rep, 1)
    with pytest.raises(TicketlabError, match="not trained"):
        trunk.prune(rep, 1, "oneshot")
    assert not any(tmp_path.rglob("*.pt")) and not any(tmp_path.rglob("metrics.jsonl"))
    # the trunk trained to level 1: level 2 prunes, but a continued level 2 still waits for continued 1
    for L in (0, 1):
        trunk.prune(rep, L)
        trunk.train(rep, L)
    assert M.density(rep.masks(1)) < 1
    with pytest.raises(TicketlabError, match="continued/level_1 is not trained"):
        trunk.prune(rep, 2, "continued")
    assert (tmp_path / "replicate_0" / "level_2" / "mask.pt").exists()
    assert sorted(files(tmp_path, "summary.json")) == [f"replicate_0/level_{L}/summary.json" for L in (0, 1)]


@pytest.fixture
def dense_control():
    """A control registered in the test alone: the ticket's level, trained with every weight."""

    @register
    class AllWeights(Control):
        name, color, linestyle = "all_weights", "C8", (0, (1, 3))
        label = "all weights, from θk"

        def masks(self, rep, level, draw):
            return M.ones_masks(rep.masks(level))

    yield CONTROLS["all_weights"]
    del CONTROLS["all_weights"]


def test_a_registered_control_reaches_the_graph_the_plots_and_the_report(tmp_path, dense_control, monkeypatch):
    from ticketlab.reports import html, plots

    cfg = LotteryConfig(levels=1, controls=("reinit", "all_weights"))  # the config's choices see it
    tasks = runner.graph(spec(tmp_path / "g", cfg))
    new = runner.Task(0, 1, "all_weights")
    assert new in tasks and new.deps() == [runner.Task(0, 0), runner.Task(0, 0)] and new.kind() == "rewind"
    assert branch_order() == ["ticket", "reinit", "random_mask", "random_mask_global", "oneshot", "continued",
                              "all_weights"]

    res = api.lottery(TRAIN, cfg, store=tmp_path, progress=False, checkpoint_every=50)
    exp = Path(res["experiment"])
    assert M.density(load_masks(exp / "replicate_0" / "all_weights" / "level_1" / "mask.pt")) == 1.0
    figures = []
    monkeypatch.setattr(plots, "save_figure", lambda fig, out: figures.append(fig) or [])
    plots.plot_accuracy([exp], tmp_path / "acc")
    handles, labels = figures[0].axes[0].get_legend_handles_labels()
    assert labels[:3] == ["ticket (n=1)", "reinit (n=1)", "all weights, from θk (n=1)"]  # n per branch
    assert handles[2].get_color() == "C8"
    table = html._results_table(res["aggregate"])
    assert table.index(">reinit<") < table.index(">all_weights<")
