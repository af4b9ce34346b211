"""Run options (ticketlab.engine.options.RunOptions): one dataclass with the same defaults on the
command line and in the API, each kind's measured stack and checkpoint interval, validation, the
older keyword arguments building it, and no run option in any experiment's identity."""

import dataclasses
import inspect
import json
from pathlib import Path

import pytest
import torch

import requires
from ticketlab import api
from ticketlab.cli.commands import main, parser
from ticketlab.cli.common import run_options
from ticketlab.core import config as C
from ticketlab.core.errors import ConfigError, TicketlabError
from ticketlab.engine.options import KIND_DEFAULTS, RunOptions
from ticketlab.engine.parallel import cpu_count
from ticketlab.experiments.lottery import runner
from ticketlab.experiments.lottery.trunk import LotteryConfig
from ticketlab.experiments.teacher_student import experiment as ts
from ticketlab.training.loop import TrainConfig

torch.set_num_threads(1)

TINY = TrainConfig(dataset="mnist1d", model="mlp", model_args={"widths": [16]}, iterations=20, batch_size=50,
                   eval_every=10)
COMMANDS = [["train"], ["lottery"], ["lottery", "--task", "rl"], ["sparse-train"], ["transfer", "SRC"],
            ["teacher-student"], ["demo"], ["sweep", "FILE.toml"], ["instability", "EXP", "--level", "1"]]


@pytest.mark.parametrize("argv", COMMANDS, ids=lambda a: " ".join(a))
def test_every_command_defaults_to_the_api_defaults(argv):
    if "rl" in argv:
        requires.package("stable_baselines3")
    ns = parser(argv).parse_args(argv)
    assert run_options(ns) == RunOptions()


@pytest.mark.parametrize("fn", [api.train, api.lottery, api.sparse_train, api.transfer, api.teacher_student,
                                api.demo])
def test_api_run_keywords_default_to_none_that_is_the_options_default(fn):
    params = inspect.signature(fn).parameters
    assert params["options"].default is None
    for name in ("workers", "stack", "checkpoint_every", "progress", "verbose"):
        if name in params:
            assert params[name].default is None, name


def test_each_kind_keeps_its_measured_stack_and_checkpoint_interval():
    got = {k: (RunOptions().resolved(k).stack, RunOptions().resolved(k).checkpoint_every) for k in KIND_DEFAULTS}
    assert got == {"train": (1, 1000), "lottery": (8, 1000), "sparse": (8, 1000), "transfer": (8, 1000),
                   "teacher_student": (16, 5000), "demo": (3, 1000)}
    # default workers: 1 in a Python caller's process; where the caller owns its process (the
    # command line), one per core, capped at the runs that can train at once
    assert RunOptions().resolved("lottery", runs=4).workers == 1
    assert RunOptions().resolved("lottery", own_process=True).workers == cpu_count()
    assert RunOptions().resolved("lottery", runs=1, own_process=True).workers == 1
    assert RunOptions(workers=3, stack=2).resolved("teacher_student", runs=1) == RunOptions(
        workers=3, stack=2, checkpoint_every=5000)
    assert api.lottery_width(LotteryConfig()) == 1
    # per replicate: the next trunk level, and 3 draws of each random control (reinit draws too)
    assert api.lottery_width(LotteryConfig(replicates=2, controls=("reinit", "random_mask"), control_draws=3)) == 14


@pytest.mark.parametrize("kw,words", [
    (dict(workers=0), ["workers", "0", ">= 1"]),
    (dict(stack="8"), ["stack", "'8'"]),
    (dict(threads=True), ["threads"]),
    (dict(checkpoint_every=0), ["checkpoint_every"]),
    (dict(device="cuda"), ["device", "'cuda'", "cpu"]),
    (dict(progress="yes"), ["progress"]),
])
def test_bad_options_name_the_field(kw, words):
    with pytest.raises(ConfigError) as e:
        RunOptions(**kw)
    assert all(w in str(e.value) for w in words), str(e.value)


def test_no_run_option_is_part_of_an_experiment_identity(tmp_path):
    assert all(not f.metadata["hashed"] for f in dataclasses.fields(RunOptions))
    a = api.train(TINY, store=tmp_path, progress=False)
    b = api.train(TINY, store=tmp_path, options=RunOptions(device="cpu", checkpoint_every=5, progress=False))
    assert a["experiment"] == b["experiment"]
    saved = json.loads((Path(a["experiment"]) / "config.json").read_text())["config"]
    assert not set(saved) & {f.name for f in dataclasses.fields(RunOptions)}


@pytest.fixture
def calls(monkeypatch):
    """The keyword arguments the API passes to the lottery runner and the teacher-student run."""
    seen = []
    monkeypatch.setattr(runner, "run_lottery", lambda *a, **kw: seen.append(kw) or {"experiment": "x", "aggregate": [], "rows": []})
    monkeypatch.setattr(ts, "run", lambda cfgs, **kw: seen.append(kw) or {"experiments": [], "rows": []})
    return seen


def test_keywords_build_the_options_and_override_them(calls):
    api.lottery(TINY, LotteryConfig())
    api.lottery(TINY, LotteryConfig(replicates=2, controls=("reinit",)))
    api.lottery(TINY, LotteryConfig(), options=RunOptions(stack=4, workers=2), stack=2)
    api.lottery(TINY, LotteryConfig(), workers=1, stack=1, progress=False, checkpoint_every=7)
    keys = ("workers", "stack", "progress", "checkpoint_every")
    assert [tuple(c[k] for k in keys) for c in calls] == [
        (1, 8, True, 1000), (1, 8, True, 1000), (2, 2, True, 1000), (1, 1, False, 7)]
    calls.clear()
    api.teacher_student([])
    api.teacher_student([], verbose=False, workers=2)
    assert [(c["stack"], c["checkpoint_every"], c["verbose"], c["workers"]) for c in calls] == [
        (16, 5000, True, 1), (16, 5000, False, 2)]


def test_the_command_line_owns_its_process_one_worker_per_core_capped_at_the_runs(tmp_path, calls, monkeypatch):
    base = ["--store", str(tmp_path), "--quiet", "--dataset", "mnist1d", "--levels", "1"]
    assert main(["lottery", *base]) == 0
    assert main(["lottery", *base, "--replicates", "2", "--controls", "reinit"]) == 0
    assert main(["lottery", *base, "--replicates", "2", "--workers", "1"]) == 0

    def stop(cfgs, **kw):  # the teacher-student command's options, then stop
        calls.append(C.to_dict(kw["options"]))
        raise TicketlabError("stop")

    monkeypatch.setattr(api, "teacher_student", stop)
    assert main(["teacher-student", "--store", str(tmp_path), "--quiet"]) == 2
    assert [c["workers"] for c in calls] == [1, min(cpu_count(), 4), 1, cpu_count()]
    assert [c["stack"] for c in calls] == [8, 8, 8, 16]


def test_a_config_files_sweep_table_gives_run_options_and_flags_override_it(tmp_path, calls):
    f = tmp_path / "lottery.toml"
    f.write_text('dataset = "mnist1d"\nlevels = 1\n[sweep]\nworkers = 1\nstack = 2\ncheckpoint_every = 9\n')
    ns = parser(["lottery"]).parse_args(["lottery", "--config", str(f), "--stack", "3"])
    assert run_options(ns) == RunOptions(workers=1, stack=3, checkpoint_every=9)
    assert main(["lottery", "--config", str(f), "--stack", "3", "--quiet"]) == 0  # the [sweep] table is no config key
    assert {k: calls[-1][k] for k in ("workers", "stack", "checkpoint_every", "progress")} == dict(
        workers=1, stack=3, checkpoint_every=9, progress=False)
    f.write_text('dataset = "mnist1d"\n[sweep]\nworker = 1\n')
    with pytest.raises(ConfigError, match=r"unknown key 'worker'.*\[sweep\] of .*lottery.toml"):
        run_options(parser(["lottery"]).parse_args(["lottery", "--config", str(f)]))


def test_a_bad_run_flag_is_one_line_before_anything_runs(tmp_path, capsys, calls):
    assert main(["lottery", "--store", str(tmp_path), "--workers", "0"]) == 2
    assert "workers: got 0" in capsys.readouterr().err and not calls
    assert main(["train", "--store", str(tmp_path), "--device", "tpu"]) == 2
    assert "device" in capsys.readouterr().err and not list(tmp_path.iterdir())


def test_one_worker_lottery_stacks_the_whole_level_unless_told():
    from ticketlab.engine.options import MAX_STACK, RunOptions
    assert RunOptions(workers=1).resolved("lottery", 12).stack == 12
    assert RunOptions(workers=1).resolved("lottery", 1000).stack == MAX_STACK
    assert RunOptions(workers=2).resolved("lottery", 12).stack == 8
    assert RunOptions(workers=1, stack=2).resolved("lottery", 12).stack == 2  # explicit wins
    assert RunOptions().resolved("demo", 6, own_process=True).stack == 3  # the demo's table


TRAINING_COMMANDS = ("train", "lottery", "instability", "sweep", "sparse-train", "demo", "teacher-student", "transfer")


@pytest.mark.parametrize("command", TRAINING_COMMANDS)
def test_every_command_that_trains_takes_the_device_flags(command):
    # issue 16: `--device`, `--precision` and `--deterministic` on every command that trains
    from ticketlab.cli.commands import COMMANDS
    assert command in COMMANDS
    flags = {o for a in parser([command])._subparsers._group_actions[0].choices[command]._actions
             for o in a.option_strings}
    assert {"--device", "--precision", "--deterministic"} <= flags, command
