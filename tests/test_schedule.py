"""The one scheduler (`ticketlab.engine.schedule`): dependency order, fixed groups, done runs
skipped, errors and Ctrl-C reaching the caller, in this process and on worker processes."""

import functools
import json
import os
from pathlib import Path

import pytest

import requires
from ticketlab.engine import parallel, schedule
from ticketlab.engine.schedule import Node, groups, run
from ticketlab.experiments.lottery import runner


def train(trained: list, root: str, fail: str | None, payloads: list) -> list:
    """Record the group, then write each run's summary (as every loop does, last)."""
    if fail in payloads:
        raise ValueError(f"run {fail} failed")
    trained.append(list(payloads))
    for p in payloads:
        (Path(root) / p).mkdir(parents=True, exist_ok=True)
        (Path(root) / p / "summary.json").write_text(json.dumps({"run": p}))
    return payloads


def worker_train(root: str, fail: str | None, payloads: list) -> list:
    if fail in payloads:
        raise ValueError(f"run {fail} failed in process {os.getpid()}")
    return train([], root, None, payloads)


def node(tmp_path, key, deps=(), stack=None):
    return Node(key, tmp_path / key, key, deps=tuple(deps), stack=stack)


def diamond(tmp_path):
    """a -> (b, c) -> d, with b and c allowed to share a stack."""
    return [node(tmp_path, "a"), node(tmp_path, "b", ["a"], "mid"), node(tmp_path, "c", ["a"], "mid"),
            node(tmp_path, "d", ["b", "c"])]


def test_dependencies_run_first_in_any_given_order(tmp_path):
    nodes = diamond(tmp_path)
    trained = []
    # the groups listed in reverse: the scheduler still waits for each group's dependencies
    run(list(reversed(groups(nodes, 8))), functools.partial(train, trained, str(tmp_path), None))
    assert trained == [["a"], ["b", "c"], ["d"]]
    assert all((tmp_path / k / "summary.json").exists() for k in "abcd")


def test_dependencies_on_an_executor(tmp_path):
    trained = []
    run(groups(diamond(tmp_path), 1), functools.partial(train, trained, str(tmp_path), None),
        executor=parallel.make_executor("inline"), workers=2)
    order = [g[0] for g in trained]
    assert order.index("a") < order.index("b") < order.index("d") and order.index("c") < order.index("d")


def test_groups_are_a_fixed_function_of_nodes_and_stack(tmp_path):
    nodes = [node(tmp_path, f"n{i}", stack=i % 2) for i in range(7)] + [node(tmp_path, "alone")]
    keys = lambda gs: [[n.key for n in g] for g in gs]
    # filled in turn, buckets in order of first appearance; a node without a stack key alone
    assert keys(groups(nodes, 3)) == [["n0", "n2", "n4"], ["n6"], ["n1", "n3", "n5"], ["alone"]]
    # even parts, and at least `spread` of them
    assert keys(groups(nodes, 3, even=True)) == [["n0", "n2"], ["n4", "n6"], ["n1", "n3", "n5"], ["alone"]]
    assert keys(groups(nodes, 8, even=True, spread=2)) == [["n0", "n2"], ["n4", "n6"], ["n1", "n3"], ["n5"],
                                                           ["alone"]]
    assert keys(groups(nodes, 1)) == [[k] for k in ["n0", "n2", "n4", "n6", "n1", "n3", "n5", "alone"]]
    # nothing but the nodes' order and stack keys: other payloads, folders and names group the same
    rebuilt = [Node(n.key, tmp_path / "elsewhere" / str(i), {"other": i}, stack=n.stack, name=f"x{i}")
               for i, n in enumerate(nodes)]
    assert keys(groups(rebuilt, 3)) == keys(groups(nodes, 3))


def test_lottery_groups_are_as_before():
    T = runner.LotteryNode
    tasks = [T(r, L) for L in range(3) for r in range(2)] + [T(r, L, c) for L in (1, 2) for r in range(2)
                                                               for c in ("reinit", "continued")]
    got = runner.groups(tasks, 8)
    assert got[:2] == [[T(0, 0)], [T(1, 0)]]  # level 0 (the dense runs): alone
    # continued training has its own schedule; rewound runs of a level split in two for two workers
    assert got[2:5] == [[T(0, 1, "continued")], [T(1, 1, "continued")],
                        [T(0, 1), T(1, 1)]] and got[5] == [T(0, 1, "reinit"), T(1, 1, "reinit")]
    assert sum(len(g) for g in got) == len(tasks) and len(runner.groups(tasks, 1)) == len(tasks)


def test_done_runs_are_skipped(tmp_path):
    nodes = diamond(tmp_path)
    for k in ("a", "b"):
        (tmp_path / k).mkdir()
        (tmp_path / k / "summary.json").write_text("{}")
    trained = []
    run(groups(nodes, 8), functools.partial(train, trained, str(tmp_path), None))
    assert trained == [["c"], ["d"]]  # b was done: only c of the b+c stack trains
    again = []
    run(groups(nodes, 8), functools.partial(train, again, str(tmp_path), None))
    assert again == []


def test_a_failing_run_raises_in_the_caller_and_stops_the_graph(tmp_path):
    trained = []
    with pytest.raises(ValueError, match="run b failed"):
        run(groups(diamond(tmp_path), 1), functools.partial(train, trained, str(tmp_path), "b"))
    assert "d" not in [k for g in trained for k in g]
    with pytest.raises(ValueError, match="run a failed"):
        run(groups(diamond(tmp_path / "x"), 1), functools.partial(train, [], str(tmp_path / "x"), "a"),
            executor=parallel.make_executor("inline"), workers=2)


def test_a_worker_error_reaches_the_caller(tmp_path):
    nodes = [node(tmp_path, k, stack="s") for k in "abcd"]
    with pytest.raises(ValueError, match="run c failed in process") as e:
        run(groups(nodes, 2), functools.partial(worker_train, str(tmp_path), "c"), workers=2)
    assert f"process {os.getpid()}" not in str(e.value)  # raised in a worker, re-raised here


def test_ctrl_c_kills_own_workers(tmp_path, monkeypatch):
    class Pool(parallel.InlineExecutor):
        terminated = False

        def terminate(self):
            Pool.terminated = True

    def interrupt(payloads):
        raise KeyboardInterrupt

    monkeypatch.setattr(schedule, "make_executor", lambda backend, workers: Pool())
    with pytest.raises(KeyboardInterrupt):
        run(groups(diamond(tmp_path), 1), interrupt, workers=2)
    assert Pool.terminated


def test_bad_graphs_are_errors(tmp_path):
    with pytest.raises(ValueError, match="not in the graph"):
        run([[node(tmp_path, "a", ["z"])]], lambda p: None)
    with pytest.raises(ValueError, match="share a key"):
        run([[node(tmp_path, "a")], [node(tmp_path, "a")]], lambda p: None)
    with pytest.raises(RuntimeError, match="cycle"):
        run([[node(tmp_path, "a", ["b"])], [node(tmp_path, "b", ["a"])]], lambda p: None)


def test_one_worker_takes_each_lottery_level_as_one_stack():
    # issue #18, point 6: spread 1 for one worker; two workers keep the two stacks of before
    T = runner.LotteryNode
    tasks = [T(r, L) for L in range(2) for r in range(3)] + [T(r, 1, c) for r in range(3) for c in ("reinit",)]
    one = runner.groups(tasks, 8, spread=runner.spread_for(1))
    assert one[3:] == [[T(0, 1), T(1, 1), T(2, 1), T(0, 1, "reinit"), T(1, 1, "reinit"), T(2, 1, "reinit")]]
    two = runner.groups(tasks, 8, spread=runner.spread_for(2))
    assert two == runner.groups(tasks, 8) and two[3:] == [[T(0, 1), T(1, 1), T(2, 1)],
                                                          [T(0, 1, "reinit"), T(1, 1, "reinit"), T(2, 1, "reinit")]]


def test_an_interrupted_lottery_stack_resumes_as_it_started(tmp_path):
    T = runner.LotteryNode
    tasks = [T(r, 1) for r in range(4)]
    def started(members, recorded=True):
        for t in members:
            d = t.run_dir(tmp_path)
            d.mkdir(parents=True, exist_ok=True)
            (d / "checkpoint.pt").write_bytes(b"")
            if recorded:
                (d / runner.STACK_FILE).write_text(json.dumps({"members": [runner._folder(u) for u in members]}))
    started(tasks[1:3])  # recorded stack [r1, r2]: kept, though one worker would now take all four
    got = [[n.key for n in g] for g in runner._stacks(tasks, 8, tmp_path, spread=1)]
    assert got == [[T(1, 1), T(2, 1)], [T(0, 1), T(3, 1)]]
    for t in tasks[1:3]:
        (t.run_dir(tmp_path) / runner.STACK_FILE).unlink()  # a store from before stack.json: the old rule
    got = [[n.key for n in g] for g in runner._stacks(tasks, 8, tmp_path, spread=1)]
    assert got == [[T(0, 1), T(1, 1)], [T(2, 1), T(3, 1)]]


def test_a_ray_task_error_reaches_the_user_in_one_line(tmp_path, capsys):
    """Issue 17: an error raised in a Ray task arrives as the job's own exception (not Ray's
    RayTaskError, whose message holds the worker's traceback), through the executor, the scheduler
    and the CLI, in the same one-line form as a worker process's error. One local Ray start (~10 s)."""
    requires.package("ray")
    from ticketlab.cli.commands import main
    from ticketlab.core.errors import DamagedError
    from ticketlab.engine.store import Store
    from ticketlab.training.loop import TrainConfig
    from ticketlab.training.rundir import read_json
    garbage = tmp_path / "summary.json"
    garbage.write_text("{not json")
    ex = parallel.make_executor("ray", workers=1)
    try:
        e = ex.submit(read_json, garbage).exception(timeout=120)
        assert type(e) is DamagedError and "\n" not in str(e) and str(garbage) in str(e)
        e = ex.submit(int, "x").exception(timeout=120)
        assert type(e) is ValueError and "\n" not in str(e)
        with pytest.raises(DamagedError) as raised:  # the scheduler raises it in the caller
            run([[node(tmp_path, "a")]], lambda payloads: read_json(garbage), executor=ex)
        assert "\n" not in str(raised.value)
        # the CLI: a sweep trial on Ray meets a damaged config.json (Ray stays up: the sweep reuses it)
        store = tmp_path / "store"
        cfg = Store(store).experiment("train", TrainConfig(iterations=1, eval_every=1, train_fraction=0.3)).path
        cfg = cfg / "config.json"
        cfg.write_text("garbage")
        (tmp_path / "sweep.toml").write_text('kind = "train"\n[base]\niterations = 1\neval_every = 1\n'
                                             'train_fraction = 0.3\n[grid]\ninit_seed = [0]\n[sweep]\nretries = 0\n')
        rc = main(["sweep", str(tmp_path / "sweep.toml"), "--backend", "ray", "--store", str(store)])
        out, err = capsys.readouterr()
        assert rc == 2
        assert "Traceback" not in out + err and "ray::" not in out + err and "RayTaskError" not in out + err
        assert f"DamagedError: {cfg}" in out + err
    finally:
        ex.shutdown()
