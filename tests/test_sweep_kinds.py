"""One sweep grammar for every kind: a tiny sweep file of each kind (train, lottery of another task,
sparse, transfer, teacher_student) loads, runs, and lands where the hand-run command puts it; the
teacher-student `--sweep` flags build the same trials as a file; an old teacher-student file whose
[sweep] table was the grid still loads, with a warning; the example files load. Tiny budgets."""

import logging
import textwrap
from pathlib import Path

import pytest
import torch

import requires
from ticketlab import api
from ticketlab.cli.commands import main, parser
from ticketlab.cli.teacher_student import configs as ts_configs
from ticketlab.core.errors import ConfigError
from ticketlab.experiments.lottery.trunk import LotteryConfig
from ticketlab.experiments.teacher_student.experiment import TeacherStudentConfig
from ticketlab.sweep import experiment_path, format_table, load_sweep, run_file, run_sweep
from ticketlab.training.loop import load_state

torch.set_num_threads(1)

EXAMPLES = Path(__file__).parents[1] / "examples"
MNIST1D = """
    dataset = "mnist1d"
    model = "mlp"
    model_args = {widths = [32]}
    batch_size = 50
    eval_every = 20
"""
TS_BASE = """
    input_dim = 8
    teacher_widths = [3]
    output_dim = 4
    steps = 40
    log_every = 20
    seeds = 1
    train_size = 100
    eval_size = 200
"""


def write(folder, text, name="sweep.toml"):
    path = Path(folder) / name
    path.write_text(textwrap.dedent(text))
    return path


def test_train_and_sparse_sweeps(tmp_path):
    rows = run_file(write(tmp_path, 'kind = "train"\n[base]' + MNIST1D + 'iterations = 40\n[grid]\ninit_seed = [0, 1]\n'),
                    backend="inline", store=tmp_path / "store", progress=False)
    assert [r["status"] for r in rows] == ["done", "done"] and rows[0]["es_test_acc"] != rows[1]["es_test_acc"]
    path = write(tmp_path, 'kind = "sparse"\n[base]' + MNIST1D + 'iterations = 40\nsparsity = 0.8\n'
                 '[grid]\nmethod = ["static", "set"]\n[sweep]\nreplicates = 2\nbackend = "inline"\n', "sparse.toml")
    rows = run_file(path, store=tmp_path / "store", progress=False)
    trials, _ = load_sweep(path)
    for t, row in zip(trials, rows):
        by_hand = api.sparse_train(*t.configs, store=tmp_path / "store", progress=False, replicates=2)
        assert row["status"] == "done" and row["experiment"] == by_hand["experiment"]
        assert row["final_test_acc"] == pytest.approx(by_hand["aggregate"]["final_test_acc"])


def test_lottery_sweep_of_another_task_uses_its_config_class(tmp_path):
    requires.package("stable_baselines3")
    from ticketlab.domains.rl import RLConfig
    path = write(tmp_path, """
        kind = "lottery"
        task = "rl"
        [base]
        env = "CartPole-v1"
        algo = "ppo"
        env_steps = 256
        n_envs = 4
        n_steps = 32
        batch_size = 64
        n_epochs = 1
        eval_every = 128
        eval_episodes = 1
        val_episodes = 1
        eval_max_steps = 20
        levels = 1
        strategy = "global"
        prune_fraction = 0.5
        [grid.train]
        init_seed = [0, 1]
        [sweep]
        backend = "inline"
    """)
    trials, options = load_sweep(path)
    assert all(isinstance(t.configs[0], RLConfig) and isinstance(t.configs[1], LotteryConfig) for t in trials)
    rows = run_file(path, store=tmp_path / "store", progress=False)
    assert [r["status"] for r in rows] == ["done", "done"]
    assert rows[0]["metric"] == "eval_return" and rows[0]["level"] == 1 and 0.4 < rows[0]["density"] < 0.6
    by_hand = api.lottery(*trials[1].configs, store=tmp_path / "store", progress=False)  # finds it done
    assert rows[1]["experiment"] == by_hand["experiment"] == str(experiment_path(trials[1], tmp_path / "store"))
    assert "es_score" in format_table(rows)


def test_lm_and_translate_sweeps_load_with_their_task_configs(tmp_path):
    requires.package("sentencepiece")
    from ticketlab.domains.nlp.lm_task import LMConfig
    (t,), _ = load_sweep(write(tmp_path, 'kind = "lottery"\ntask = "lm"\n[base]\nhidden = 16\nlevels = 1\n'))
    assert t.configs == (LMConfig(hidden=16), LotteryConfig(levels=1))
    with pytest.raises(ConfigError, match="unknown key 'iterations'"):  # a TrainConfig key: not the lm task's
        load_sweep(write(tmp_path, 'kind = "lottery"\ntask = "lm"\n[base]\niterations = 5\n'))


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    """A finished source lottery (levels 0-1), run as a one-trial lottery sweep: (store, folder name)."""
    root = tmp_path_factory.mktemp("transfer")
    (row,) = run_file(write(root, 'kind = "lottery"\n[base]' + MNIST1D + 'iterations = 60\nlevels = 1\n'),
                      backend="inline", store=root / "store", progress=False)
    return root / "store", Path(row["experiment"]).name


def test_transfer_sweep_lands_where_ticketlab_transfer_does(source, tmp_path):
    store, src = source
    path = write(tmp_path, f"""
        kind = "transfer"
        [base]
        source = "{src}"
        levels = [1]
        controls = ["random"]
        [grid]
        target = [{{optimizer = "sgd", lr = 0.05, momentum = 0.9}}, {{train_fraction = 0.5}}]
    """)
    trials, _ = load_sweep(path)
    assert [t.configs[0].target for t in trials] == [{"optimizer": "sgd", "lr": 0.05, "momentum": 0.9},
                                                      {"train_fraction": 0.5}]
    rows = run_sweep(trials, backend="process", workers=2, store=store, progress=False, checkpoint_every=20)
    assert [r["status"] for r in rows] == ["done", "done"] and all(r["level"] == 1 for r in rows)
    for t, row in zip(trials, rows):
        by_hand = api.transfer(t.configs[0], store=store, progress=False)  # finds it all done
        assert row["experiment"] == by_hand["experiment"]
        ticket = next(a for a in by_hand["aggregate"] if a["branch"] == "transfer" and a["level"] == 1)
        assert row["es_test_acc"] == ticket["es_test_acc"]
    again = run_sweep(trials, backend="inline", store=store, progress=False)
    assert [r["status"] for r in again] == ["skipped", "skipped"]


def test_teacher_student_sweep_file_and_flags_make_the_same_trials_and_runs(tmp_path, capsys):
    base = TS_BASE.replace("teacher_widths = [3]\n", "")
    path = write(tmp_path, 'kind = "teacher_student"\n[base]' + base + '[grid]\nmulti = [1, 2]\n'
                 'teacher_widths = [[3], [2, 2]]\n[sweep]\nworkers = 1\n')
    trials, options = load_sweep(path)
    assert options == {"workers": 1} and len(trials) == 4
    assert trials[1].configs[0] == TeacherStudentConfig(input_dim=8, teacher_widths=(2, 2), output_dim=4, steps=40,
                                                        log_every=20, seeds=1, train_size=100, eval_size=200, multi=1)
    rows = run_file(path, store=tmp_path / "a", progress=False)
    assert [r["status"] for r in rows] == ["done"] * 4 and all(0 <= r["success"] <= 1 for r in rows)
    # the command's --sweep flags: the same configs, in the same order, trained the same way
    args = ["teacher-student", "--store", str(tmp_path / "b"), "--quiet", "--input-dim", "8", "--output-dim", "4",
            "--steps", "40", "--log-every", "20", "--seeds", "1", "--train-size", "100", "--eval-size", "200",
            "--sweep", "multi=1,2", "--sweep", "teacher_widths=3/2,2"]
    assert ts_configs(parser(args).parse_args(args)) == [t.configs[0] for t in trials]
    assert main(args) == 0
    for t, row in zip(trials, rows):
        a = Path(row["experiment"])
        b = experiment_path(t, tmp_path / "b")
        assert a.name == b.name
        wa, wb = (load_state(p / "seed_0" / "final.pt")["student"]["weights"] for p in (a, b))
        assert all(torch.equal(u, v) for u, v in zip(wa, wb))
    assert [r["status"] for r in run_file(path, store=tmp_path / "a", progress=False)] == ["skipped"] * 4


def test_an_old_teacher_student_file_with_the_grid_in_sweep_still_works(tmp_path, caplog):
    old = write(tmp_path, TS_BASE + "[sweep]\nmulti = [1, 2]\n", "old.toml")
    new = write(tmp_path, TS_BASE + "[grid]\nmulti = [1, 2]\n[sweep]\nstack = 4\n", "new.toml")
    parse = lambda f: parser(["teacher-student"]).parse_args(["teacher-student", "--config", str(f)])
    with caplog.at_level(logging.WARNING):
        old_cfgs = ts_configs(parse(old))
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "[sweep] holds the grid" in warnings[0].getMessage()
    assert str(old) in warnings[0].getMessage() and "\n" not in warnings[0].getMessage()
    caplog.clear()
    assert ts_configs(parse(new)) == old_cfgs and [c.multi for c in old_cfgs] == [1, 2] and not caplog.records
    # flags fix a key the file varies; --sweep varies a key the file fixes
    args = ["teacher-student", "--config", str(new), "--multi", "3", "--sweep", "steps=20,40"]
    assert [(c.multi, c.steps) for c in ts_configs(parser(args).parse_args(args))] == [(3, 20), (3, 40)]
    assert main(["teacher-student", "--config", str(old), "--store", str(tmp_path / "s"), "--quiet"]) == 0


def test_the_example_files_load():
    trials, options = load_sweep(EXAMPLES / "sweep_teacher_student.toml")
    assert len(trials) == 9 and {t.kind for t in trials} == {"teacher_student"} and options == {"stack": 16}
    trials, _ = load_sweep(EXAMPLES / "sweep.toml")
    assert len(trials) == 12
    from ticketlab.experiments.transfer_matrix import load_matrix, run_options
    assert len(load_matrix(EXAMPLES / "transfer_matrix.toml").pairs) == 4
    assert run_options(EXAMPLES / "transfer_matrix.toml").workers is None


def test_sparse_points_on_one_recipe_share_stacks_in_a_sweep(tmp_path):
    # sparse trials with one [train] whose runs stack go to one worker together (`jobs`), as
    # `ticketlab sparse-train --sweep` runs them; a method or recipe of their own keeps them apart
    from ticketlab.sweep.dispatch import jobs
    path = write(tmp_path, 'kind = "sparse"\n[base]' + MNIST1D + 'iterations = 40\nmethod = "set"\n'
                 'update_interval = 20\n[grid]\nsparsity = [0.7, 0.8, 0.9]\ndistribution = ["erk", "uniform"]\n'
                 '[sweep]\nreplicates = 2\nstack = 8\n', "points.toml")
    trials, _ = load_sweep(path)
    by = lambda js: [[t.index for t in j] for j in js]  # noqa: E731
    assert by(jobs(trials, lambda t: 8, 1, 2)) == [[0, 1, 2], [3, 4, 5]]  # stacks of at most 8 runs, even
    assert by(jobs(trials, lambda t: 8, 3, 2)) == [[0, 1], [2, 3], [4, 5]]  # at least one job per worker
    assert by(jobs(trials, lambda t: 1, 1, 2)) == [[i] for i in range(6)]  # no stacking: one trial a job
    assert by(jobs(trials, lambda t: 16, 1, 1)) == [list(range(6))]
    rows = run_file(path, store=tmp_path / "store", progress=False, backend="process", workers=1)
    assert [r["status"] for r in rows] == ["done"] * 6
    for t, row in zip(trials, rows):
        by_hand = api.sparse_train(*t.configs, store=tmp_path / "store", progress=False, replicates=2)
        assert row["experiment"] == by_hand["experiment"]  # found done: the sweep's runs, two stacks of 6
        assert [r["stack_size"] for r in by_hand["rows"]] == [6, 6]
        assert row["final_test_acc"] == pytest.approx(by_hand["aggregate"]["final_test_acc"])
