"""Sweeps: grid expansion and its errors; process and Ray backends landing in the folders a hand-run
command uses, with identical results; skipping finished trials; retries and failures; Ctrl-C and a
killed worker, both resumed from checkpoints. Tiny budgets on MNIST-1D."""

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from concurrent.futures import Executor, ThreadPoolExecutor
from pathlib import Path

import pytest
import torch

import requires
from ticketlab import api
from ticketlab.experiments import dense
from ticketlab.experiments.lottery import runner as lottery_runner
from ticketlab.core.errors import ConfigError, TicketlabError
from ticketlab.experiments.lottery.trunk import LotteryConfig
from ticketlab.engine.parallel import make_executor
from ticketlab.experiments.sparse_training import SparseConfig
from ticketlab.engine.store import Store
from ticketlab.sweep import Trial, command, experiment_path, format_table, load_sweep, run_sweep
from ticketlab.training.loop import TrainConfig, load_state

torch.set_num_threads(1)

TINY = dict(dataset="mnist1d", model="mlp", model_args={"widths": [32]}, iterations=100, batch_size=50,
            eval_every=50)
TINY_TOML = """
    kind = "train"
    [base]
    dataset = "mnist1d"
    model = "mlp"
    model_args = {widths = [32]}
    iterations = %d
    batch_size = 50
    eval_every = %d
    [grid]
    init_seed = [0, 1]
"""
LONG = dict(TINY, iterations=1000, eval_every=100)  # long enough to interrupt after its first checkpoint
METRICS = ("es_iter", "es_test_acc", "final_test_acc")
needs_proc = pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="finds workers through /proc")


def write(folder, text, name="sweep.toml"):
    path = Path(folder) / name
    path.write_text(textwrap.dedent(text))
    return path


# ---- the sweep file -------------------------------------------------------------------

def test_grid_expands_to_the_cartesian_product(tmp_path):
    path = write(tmp_path, """
        kind = "lottery"
        [base]
        dataset = "mnist1d"
        iterations = 100
        levels = 3
        [grid]
        init_seed = [0, 1, 2]
        model = ["mlp", "lenet300_100"]
        prune_fraction = [0.2, 0.5]
        [sweep]
        retries = 2
        workers = 2
    """)
    trials, options = load_sweep(path)
    assert len(trials) == 12 and [t.index for t in trials] == list(range(12))
    assert options == {"retries": 2, "workers": 2}
    assert trials[0].overrides == {"init_seed": 0, "model": "mlp", "prune_fraction": 0.2}
    assert trials[1].overrides == {"init_seed": 0, "model": "mlp", "prune_fraction": 0.5}  # last key fastest
    assert trials[11].overrides == {"init_seed": 2, "model": "lenet300_100", "prune_fraction": 0.5}
    train, lot = trials[5].configs
    assert train == TrainConfig(dataset="mnist1d", iterations=100, init_seed=1, model="mlp")
    assert lot == LotteryConfig(levels=3, prune_fraction=0.5)
    assert {t.kind for t in trials} == {"lottery"}
    # file order decides, not which config a key belongs to
    path = write(tmp_path, 'kind = "lottery"\n[grid]\nprune_fraction = [0.1, 0.2]\ninit_seed = [0, 1]\n', "order.toml")
    assert [t.overrides for t in load_sweep(path)[0]][:2] == [{"prune_fraction": 0.1, "init_seed": 0},
                                                             {"prune_fraction": 0.1, "init_seed": 1}]


def test_sectioned_and_flat_files_give_the_same_trials(tmp_path):
    flat = write(tmp_path, """
        kind = "lottery"
        [base]
        dataset = "mnist1d"
        levels = 2
        [grid]
        model_args = [{widths = [32]}, {widths = [64, 32]}]
        milestones = [[50], [50, 80]]
        rewind_iter = [0, 10]
    """, "flat.toml")
    sectioned = write(tmp_path, """
        kind = "lottery"
        [base.train]
        dataset = "mnist1d"
        [base.lottery]
        levels = 2
        [grid.train]
        model_args = [{widths = [32]}, {widths = [64, 32]}]
        milestones = [[50], [50, 80]]
        [grid.lottery]
        rewind_iter = [0, 10]
    """, "sectioned.toml")
    a, _ = load_sweep(flat)
    b, _ = load_sweep(sectioned)
    assert len(a) == 8 and [t.configs for t in a] == [t.configs for t in b]
    assert a[7].configs[0].model_args == {"widths": [64, 32]} and a[7].configs[0].milestones == (50, 80)
    assert a[7].configs[1].rewind_iter == 10 and a[7].configs[1].levels == 2
    # no grid: one trial, the base
    (only,), _ = load_sweep(write(tmp_path, 'kind = "train"\n[base]\nlr = 0.01\n', "one.toml"))
    assert only.configs == (TrainConfig(lr=0.01),) and only.label == "base"


@pytest.mark.parametrize("text,words", [
    ('kind = "train"\ngrids = 1\n', ["'grids'"]),
    ('[base]\nlr = 0.1\n', ["kind"]),
    ('kind = "prune"\n', ["kind", "'prune'"]),
    ('kind = "train"\n[base]\niteration = 10\n', ["'iteration'", "[base]", "did you mean 'iterations'"]),
    ('kind = "train"\n[base]\nlevels = 3\n', ["'levels'", "[base]"]),  # a lottery key in a train sweep
    ('kind = "lottery"\n[base.lottery]\nlr = 0.1\n', ["'lr'", "[base.lottery]"]),
    ('kind = "train"\n[grid]\nseed = [1, 2]\n', ["'seed'", "[grid]"]),
    ('kind = "train"\n[sweep]\nbackends = "ray"\n', ["'backends'", "[sweep]"]),
    ('kind = "train"\n[sweep]\nretries = -1\n', ["retries", ">= 0"]),
    ('kind = "train"\n[sweep]\nbackend = "mpi"\n', ["backend", "'mpi'"]),
    ('kind = "train"\n[grid]\ninit_seed = 3\n', ["'init_seed'", "non-empty list"]),
    ('kind = "train"\n[grid]\ninit_seed = []\n', ["'init_seed'", "non-empty list"]),
    ('kind = "train"\n[base]\nlr = 0.1\n[grid]\nlr = [0.1, 0.2]\n', ["'lr'", "both"]),
    ('kind = "train"\n[grid]\nlr = [0.1, -1.0]\n', ["lr", "-1.0", "trial 1"]),
    ('kind = "train"\n[grid]\ninit_seed = [0, 1, 0]\n', ["trials 0 and 2", "same config"]),
    ('kind = "train"\n[base]\ndataset = "mnist1d"\n[base.train]\ndataset = "digits"\n', ["'dataset'", "twice"]),
    ('kind = "sparse"\n[grid]\nmethod = ["rigl", "magic"]\n', ["method", "'magic'", "trial 1"]),
    ('kind = "sparse"\n[base.sparse]\nlevels = 2\n', ["'levels'", "[base.sparse]"]),
    ('kind = "train"\n[sweep]\nreplicates = 3\n', ["replicates", "sparse", "init_seed"]),
    ('kind = "sparse"\n[sweep]\nreplicates = 0\n', ["replicates", ">= 1"]),
    # the kinds added with the one grammar: tasks, teacher-student, run options, transfer
    ('kind = "train"\ntask = "rl"\n', ["task", "lottery"]),
    ('kind = "teacher_student"\n[sweep]\nmulti = [1, 2]\nworkers = 2\n', ["'multi'", "[grid]"]),
    ('kind = "teacher_student"\n[grid]\nmulti = [1]\n[sweep]\nsteps = [1, 2]\n', ["[grid]", "[sweep]"]),
    ('kind = "teacher_student"\n[sweep]\nreplicates = 2\n', ["replicates", "seeds"]),
    ('kind = "lottery"\n[sweep]\nstack = 0\n', ["stack", "[sweep]"]),
    ('kind = "lottery"\n[sweep]\ndevice = "cuda"\n', ["device", "'cuda'"]),
    ('kind = "transfer"\n[base]\ndataset = "mnist"\n', ["'dataset'", "[base]"]),
])
def test_sweep_file_errors_name_the_key_and_the_file(tmp_path, text, words):
    path = write(tmp_path, text, "bad-sweep.toml")
    with pytest.raises(ConfigError) as e:
        load_sweep(path)
    for w in words + ["bad-sweep.toml"]:
        assert w in str(e.value), (w, str(e.value))


def test_the_example_sweep_loads():
    trials, options = load_sweep(Path(__file__).parents[1] / "examples" / "sweep.toml")
    assert len(trials) == 12 and {t.kind for t in trials} == {"lottery"} and options["retries"] == 1


# ---- backends ---------------------------------------------------------------------------

@pytest.fixture(scope="module")
def process_sweep(tmp_path_factory):
    """A 2-trial train sweep on 2 worker processes: (trials, rows, store)."""
    root = tmp_path_factory.mktemp("process")
    trials, _ = load_sweep(write(root, TINY_TOML % (100, 50)))
    rows = run_sweep(trials, backend="process", workers=2, store=root / "store", progress=False,
                     checkpoint_every=50)
    return trials, rows, root / "store"


def test_process_sweep_lands_in_the_hand_run_folders(process_sweep):
    trials, rows, store = process_sweep
    assert [r["status"] for r in rows] == ["done", "done"] and [r["attempts"] for r in rows] == [1, 1]
    for seed, row in zip((0, 1), rows):
        exp = Store(store).experiment("train", TrainConfig(**TINY, init_seed=seed))
        assert Path(row["experiment"]) == exp.path
        s = api.show(str(exp.path), store=store)["summary"]
        assert (row["es_iter"], row["es_test_acc"]) == (s["early_stop"]["iter"], s["early_stop"]["test_acc"])
    assert rows[0]["es_test_acc"] != rows[1]["es_test_acc"]  # two seeds, two different runs
    table = format_table(rows)
    assert table.splitlines()[0].split()[:4] == ["trial", "init_seed", "status", "experiment"]
    assert "train-" in table and "es_test_acc" in table


class NoDispatch(Executor):
    workers = 2

    def submit(self, fn, /, *args, **kwargs):
        raise AssertionError("a finished trial was dispatched")


def test_rerun_skips_finished_trials_without_dispatch(process_sweep):
    trials, rows, store = process_sweep
    finals = [Path(r["experiment"]) / "final.pt" for r in rows]
    mtimes = [f.stat().st_mtime_ns for f in finals]
    again = run_sweep(trials, backend=NoDispatch(), store=store, progress=False)
    assert [r["status"] for r in again] == ["skipped", "skipped"] and [r["attempts"] for r in again] == [0, 0]
    assert [f.stat().st_mtime_ns for f in finals] == mtimes
    assert [{m: r[m] for m in METRICS} for r in again] == [{m: r[m] for m in METRICS} for r in rows]


def _listeners(port: int) -> list[str]:
    """Local addresses (hex, as in /proc/net/tcp*) listening on `port`."""
    out = []
    for name in ("tcp", "tcp6"):
        path = Path("/proc/net") / name
        if path.exists():
            for line in path.read_text().splitlines()[1:]:
                local, state = line.split()[1], line.split()[3]
                addr, p = local.split(":")
                if state == "0A" and int(p, 16) == port:
                    out.append(addr)
    return out


def _loopback(hex_addr: str) -> bool:
    return hex_addr in ("0100007F", "0000000000000000FFFF00000100007F", "00000000000000000000000001000000")


def test_ray_backend_gives_the_process_backends_results(process_sweep, tmp_path):
    ray = requires.package("ray")
    trials, expected, _ = process_sweep
    t0 = time.perf_counter()
    ex = make_executor("ray", workers=2)
    startup = time.perf_counter() - t0
    try:
        assert ex.workers == 2
        assert ray.util.get_node_ip_address() == "127.0.0.1"
        gcs = ray.get_runtime_context().gcs_address
        assert gcs.startswith("127.0.0.1:"), gcs
        if Path("/proc/net/tcp").exists():
            found = _listeners(int(gcs.rsplit(":", 1)[1]))
            assert found and all(_loopback(a) for a in found), found
        rows = run_sweep(trials, backend=ex, store=tmp_path, progress=False, checkpoint_every=50)
    finally:
        ex.shutdown()
    assert not ray.is_initialized()
    print(f"ray: local instance started in {startup:.1f} s")
    assert [r["status"] for r in rows] == ["done", "done"]
    for a, b in zip(rows, expected):
        assert Path(a["experiment"]).name == Path(b["experiment"]).name
        assert {m: a[m] for m in METRICS} == {m: b[m] for m in METRICS}
        wa = load_state(Path(a["experiment"]) / "final.pt")["model"]
        wb = load_state(Path(b["experiment"]) / "final.pt")["model"]
        assert all(torch.equal(wa[k], wb[k]) for k in wa)


def test_backend_errors(monkeypatch):
    with pytest.raises(ConfigError, match="backend"):
        make_executor("mpi")
    with pytest.raises(ConfigError, match="workers"):
        make_executor("process", workers=0)
    monkeypatch.setitem(sys.modules, "ray", None)  # as if not installed
    with pytest.raises(ConfigError, match=r"pip install 'ticketlab\[dist\]'"):
        make_executor("ray")


# ---- failures ---------------------------------------------------------------------------

def tiny_trial(i, **changes):
    return Trial(i, "train", (TrainConfig(**{**TINY, **changes}),), changes)


def test_a_trial_failing_once_is_retried_and_a_broken_one_reported(tmp_path, monkeypatch):
    real, calls = dense.train, []

    def flaky(cfg, **kw):  # the first call fails, as a transient error would
        calls.append(cfg.dataset)
        if len(calls) == 1:
            raise RuntimeError("transient failure")
        return real(cfg, **kw)

    monkeypatch.setattr(dense, "train", flaky)
    trials = [tiny_trial(0, init_seed=3), tiny_trial(1, dataset="no-such-data")]
    rows = run_sweep(trials, backend="inline", store=tmp_path, retries=1, progress=False)
    assert calls == ["mnist1d", "no-such-data", "mnist1d", "no-such-data"]  # retries go to the back
    ok, bad = rows
    assert (ok["status"], ok["attempts"], "error" in ok) == ("done", 2, False)
    assert (bad["status"], bad["attempts"]) == ("failed", 2)
    assert bad["error"].startswith("DataError: unknown dataset 'no-such-data'")
    assert not Path(bad["experiment"]).exists()  # no empty folder left for a typo
    assert "failed" in format_table(rows) and "DataError" in format_table(rows)
    # retries=0: one attempt only
    (row,) = run_sweep(trials[1:], backend="inline", store=tmp_path, retries=0, progress=False)
    assert (row["status"], row["attempts"]) == ("failed", 1)


def test_lottery_trials_report_the_last_ticket_and_are_skipped_when_complete(tmp_path, monkeypatch):
    # a trial's time is taken around its run, also where the run happens inside submit (inline): a
    # clock that moves only while trials run (the dispatcher's own `time`, not the global module)
    from types import SimpleNamespace

    from ticketlab.sweep import dispatch
    now, real = [0.0], dispatch.run_trials

    def run_trials(*a, **kw):
        out = real(*a, **kw)
        now[0] += 5.0
        return out
    monkeypatch.setattr(dispatch, "run_trials", run_trials)
    monkeypatch.setattr(dispatch, "time", SimpleNamespace(perf_counter=lambda: now[0]))
    trial = Trial(0, "lottery", (TrainConfig(**TINY), LotteryConfig(levels=1, prune_fraction=0.5)), {})
    (row,) = run_sweep([trial], backend="inline", store=tmp_path, progress=False, checkpoint_every=50)
    assert row["time_s"] == 5.0  # it read 0.0 for every inline trial: the clock started after the run
    monkeypatch.undo()
    by_hand = api.lottery(*trial.configs, store=tmp_path, progress=False)  # finds it all done
    ticket = [a for a in by_hand["aggregate"] if a["branch"] == "ticket" and a["level"] == 1][0]
    assert row["status"] == "done" and row["experiment"] == by_hand["experiment"]
    assert (row["level"], row["density"], row["es_test_acc"]) == (1, ticket["density"], ticket["es_test_acc"])
    assert 0.4 < row["density"] < 0.6
    (again,) = run_sweep([trial], backend="inline", store=tmp_path, progress=False)
    assert again["status"] == "skipped" and again["es_test_acc"] == row["es_test_acc"]
    # asking for one more level extends the same experiment
    more = Trial(0, "lottery", (trial.configs[0], LotteryConfig(levels=2, prune_fraction=0.5)), {})
    (ext,) = run_sweep([more], backend="inline", store=tmp_path, progress=False, checkpoint_every=50)
    assert (ext["status"], ext["level"], ext["experiment"]) == ("done", 2, row["experiment"])


def test_sparse_trials_run_sparse_train_with_the_sweeps_replicates(tmp_path):
    trials, options = load_sweep(write(tmp_path, """
        kind = "sparse"
        [base]
        dataset = "mnist1d"
        model = "mlp"
        iterations = 40
        eval_every = 20
        sparsity = 0.8
        [grid.sparse]
        method = ["rigl", "static"]
        [sweep]
        replicates = 2
    """))
    assert options == {"replicates": 2} and [t.configs[1].method for t in trials] == ["rigl", "static"]
    assert trials[0].configs[1] == SparseConfig(method="rigl", sparsity=0.8)
    rows = run_sweep(trials, backend="inline", store=tmp_path / "store", progress=False, **options)
    for t, row in zip(trials, rows):
        by_hand = api.sparse_train(*t.configs, store=tmp_path / "store", progress=False, replicates=2)
        assert row["status"] == "done" and row["experiment"] == by_hand["experiment"]
        assert row["experiment"] == str(experiment_path(t, tmp_path / "store"))
        accs = [r["final_test_acc"] for r in by_hand["rows"]]
        assert len(accs) == 2 and row["final_test_acc"] == pytest.approx(sum(accs) / 2)
    again = run_sweep(trials, backend="inline", store=tmp_path / "store", progress=False, **options)
    assert [r["status"] for r in again] == ["skipped", "skipped"]
    assert "final_test_acc_std" in format_table(again)


class Threads(ThreadPoolExecutor):
    workers = 2


def test_trials_sharing_a_folder_never_run_at_once(tmp_path, monkeypatch):
    events, lock = [], threading.Lock()

    def fake_lottery(train_cfg, cfg, **kw):  # records when each experiment starts and ends
        exp = str(experiment_path(Trial(0, "lottery", (train_cfg, cfg), {}), tmp_path))
        with lock:
            events.append(("start", exp))
        time.sleep(0.2)
        with lock:
            events.append(("end", exp))
        return {"experiment": exp, "aggregate": []}

    monkeypatch.setattr(lottery_runner, "run_lottery", fake_lottery)
    seed0, seed1 = TrainConfig(**TINY), TrainConfig(**TINY, init_seed=1)
    trials = [Trial(0, "lottery", (seed0, LotteryConfig(levels=1)), {}),
              Trial(1, "lottery", (seed0, LotteryConfig(levels=2)), {}),  # same folder as trial 0
              Trial(2, "lottery", (seed1, LotteryConfig(levels=1)), {})]
    with Threads(2) as ex:
        rows = run_sweep(trials, backend=ex, store=tmp_path, progress=False)
    assert [r["status"] for r in rows] == ["done"] * 3
    a, c = (str(experiment_path(t, tmp_path)) for t in (trials[0], trials[2]))
    running = set()
    for what, exp in events:
        assert not (what == "start" and exp in running), "two trials ran in one folder at once"
        (running.add if what == "start" else running.discard)(exp)
    assert set(events[:2]) == {("start", a), ("start", c)}  # the other folder went ahead


def test_command_prints_the_table_and_reports_failures(tmp_path, capsys):
    path = write(tmp_path, 'kind = "train"\n[grid]\ndataset = ["no-such-data"]\n[sweep]\nretries = 0\n')
    with pytest.raises(TicketlabError, match="1 of 1 trials failed"):
        command(path, backend="inline", store=tmp_path / "store", progress=False)
    out = capsys.readouterr().out
    assert "no-such-data" in out and "failed" in out


def test_keyboard_interrupt_propagates_after_stopping(tmp_path, monkeypatch, capsys):
    def interrupted(cfg, **kw):
        raise KeyboardInterrupt

    monkeypatch.setattr(dense, "train", interrupted)
    with pytest.raises(KeyboardInterrupt):
        run_sweep([tiny_trial(0), tiny_trial(1, init_seed=1)], backend="inline", store=tmp_path)
    assert "Run the same command again" in capsys.readouterr().err


# ---- interrupted and killed workers -------------------------------------------------------

@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """Final weights of the LONG run with seed 0, trained in this process without interruption."""
    s = api.train(TrainConfig(**LONG), store=tmp_path_factory.mktemp("reference"), progress=False)
    return load_state(Path(s["experiment"]) / "final.pt")["model"]


def lock_holder(lock: Path) -> int | None:
    """The pid of the process with `lock` open (the worker running that experiment)."""
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            for fd in os.listdir(f"/proc/{pid}/fd"):
                if os.readlink(f"/proc/{pid}/fd/{fd}") == str(lock):
                    return int(pid)
        except OSError:
            continue
    return None


def wait_for_checkpoint(exp: Path, proc=None, timeout=90) -> int:
    """Wait until the run in `exp` has written a checkpoint; return the pid of the worker running it."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if (exp / "checkpoint.pt").exists():
            pid = lock_holder(exp / ".lock")
            if pid is not None:
                return pid
        if proc is not None and proc.poll() is not None:
            pytest.fail(f"the sweep ended early: {proc.stderr.read()}")
        time.sleep(0.01)
    pytest.fail("no checkpoint written")


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/status").read_text().split("State:")[1].split()[0]
    except (OSError, IndexError):
        return False
    return state not in ("Z", "X")


def same_weights(exp: Path, reference) -> bool:
    w = load_state(exp / "final.pt")["model"]
    return all(torch.equal(w[k], reference[k]) for k in reference)


SCRIPT = """
import sys
from ticketlab.sweep import load_sweep, run_sweep
trials, _ = load_sweep(sys.argv[1])
try:
    run_sweep(trials, backend="process", workers=1, store=sys.argv[2], checkpoint_every=100)
except KeyboardInterrupt:
    sys.exit(130)  # as `ticketlab` does
"""


@needs_proc
def test_ctrl_c_stops_workers_and_the_same_command_resumes(tmp_path, reference):
    path = write(tmp_path, TINY_TOML % (LONG["iterations"], LONG["eval_every"]))
    trials, _ = load_sweep(path)
    store = tmp_path / "store"
    exp0, exp1 = (experiment_path(t, store) for t in trials)
    proc = subprocess.Popen([sys.executable, "-c", SCRIPT, str(path), str(store)], stderr=subprocess.PIPE,
                            text=True, start_new_session=True, env={**os.environ, "OMP_NUM_THREADS": "1"},
                            # a terminal's Ctrl-C disposition, even when the tests run as a background job
                            # (whose shell ignores SIGINT, which the child would inherit)
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        worker = wait_for_checkpoint(exp0, proc)
        os.killpg(proc.pid, signal.SIGINT)  # Ctrl-C in a terminal: the whole process group
        assert proc.wait(timeout=60) == 130
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert "Run the same command again" in proc.stderr.read()
    deadline = time.monotonic() + 10
    while alive(worker) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not alive(worker)
    assert (exp0 / "checkpoint.pt").exists() and not (exp0 / "summary.json").exists()
    assert not (exp1 / "summary.json").exists()
    # the same sweep again: trial 0 resumes from its checkpoint, trial 1 runs; same weights as
    # an uninterrupted run
    rows = run_sweep(trials, backend="inline", store=store, progress=False, checkpoint_every=100)
    assert [r["status"] for r in rows] == ["done", "done"]
    assert not (exp0 / "checkpoint.pt").exists() and same_weights(exp0, reference)


@needs_proc
def test_a_killed_worker_is_replaced_and_its_trial_resumes(tmp_path, reference):
    trial = Trial(0, "train", (TrainConfig(**LONG),), {})
    exp = experiment_path(trial, tmp_path)
    killed = []

    def kill_when_checkpointed():
        pid = wait_for_checkpoint(exp)
        os.kill(pid, signal.SIGKILL)  # as the out-of-memory killer would
        killed.append(pid)

    killer = threading.Thread(target=kill_when_checkpointed, daemon=True)
    killer.start()
    (row,) = run_sweep([trial], backend="process", workers=1, store=tmp_path, retries=1, progress=False,
                       checkpoint_every=100)
    killer.join(5)
    assert killed and (row["status"], row["attempts"]) == ("done", 2)
    assert same_weights(exp, reference)
