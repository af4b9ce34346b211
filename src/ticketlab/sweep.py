"""Sweeps: run the cartesian product of config values as independent trials (`ticketlab sweep`).

A sweep file (TOML; see examples/sweep.toml):

    kind = "lottery"            # or "train", "sparse": which command each trial runs
    [base]                      # the fixed config: keys of TrainConfig (and LotteryConfig for
    dataset = "mnist1d"         #   lottery, SparseConfig for sparse), flat or in [base.train] /
                                #   [base.lottery] / [base.sparse] tables
    iterations = 1000
    levels = 3
    [grid]                      # one list per varied key (flat or [grid.train] / [grid.lottery]);
    init_seed = [0, 1, 2]       #   the trials are the cartesian product, the last key varying
    model = ["mlp", "lenet300_100"]   # fastest. A list-valued key takes a list of lists
    prune_fraction = [0.2, 0.5]       #   (milestones = [[100], [100, 200]]); model_args a list of tables
    [sweep]                     # optional run options; command-line flags override them
    retries = 1                 #   re-runs of a failed trial (default 1)
    backend = "process"         #   inline | process | ray
    workers = 2                 #   parallel trials (default: the CPUs)
    address = "auto"            #   ray only: join this cluster instead of starting a local one
    checkpoint_every = 1000     #   iterations between resumable checkpoints
    replicates = 3              #   sparse only: replicates per trial (default 1)

Unknown keys anywhere, a grid value that is not a non-empty list, a key given in both [base] and
[grid], and two trials with identical configs are errors naming the key and the file.

Each trial calls `api.train` or `api.lottery`, exactly as `ticketlab train` / `ticketlab lottery`
would with the same config, in a worker (`ticketlab.engine.parallel`; one torch thread per worker). So its
results land in the store folder that the hand-run command would use, and everything the store
does holds: finished work is not redone, interrupted work resumes from its last checkpoint.

- Skipping: a `train` trial whose summary.json exists is reported `skipped` without dispatch.
  A `lottery` trial is always dispatched: whether it is complete depends on its levels (or
  target sparsity), replicates and controls, which `api.lottery` already works out cheaply (it
  loads the data and checks the runs' summaries, training nothing when all are there). It is
  reported `skipped` when no run finished during the call.
- Failures: a trial that raises is retried up to `retries` times (at the back of the queue), then
  reported `failed` with its error; the sweep goes on. A worker process that dies (killed, out of
  memory) takes its pool down: every trial running at that moment counts a failed attempt and is
  retried on a fresh pool, resuming from its last checkpoint.
- Ctrl-C: pending trials are cancelled and the workers killed (their runs keep their last
  checkpoint and release their locks); KeyboardInterrupt is re-raised (the CLI exits with 130).
  Running the same command again skips finished trials and resumes the others.
- Trials that share an experiment folder (lottery trials differing only in run shape: levels,
  replicates, controls) run one after the other, never at once: the later one extends the
  earlier one's runs.
- A lottery trial runs its IMP levels and controls in its worker's process (`api.lottery` with
  workers=1, the default `stack`): the sweep's parallelism is across trials.
- A sparse trial is `ticketlab sparse-train` (`api.sparse_train`) with the [sweep] table's
  `replicates`, stacked where the model allows; like a lottery trial it is always dispatched
  (finished replicates train nothing) and reported `skipped` when no replicate finished.
"""

from __future__ import annotations

import difflib
import itertools
import json
import signal
import sys
import threading
import time
from collections import deque
from concurrent.futures import FIRST_COMPLETED, Executor, wait
from dataclasses import dataclass
from pathlib import Path

from ticketlab.core import config as C
from ticketlab.core.errors import ConfigError, TicketlabError
from ticketlab.experiments.lottery.trunk import LotteryConfig, LotteryRun
from ticketlab.engine.parallel import BACKENDS, error_text, make_executor, set_threads
from ticketlab.experiments import dense, sparse_training
from ticketlab.experiments.lottery import runner as lottery_runner
from ticketlab.experiments.sparse_training import SparseConfig, SparseRun
from ticketlab.engine.store import resolve_store
from ticketlab.reports.tables import text_table
from ticketlab.training.loop import TrainConfig

KINDS = {"train": {"train": TrainConfig}, "lottery": {"train": TrainConfig, "lottery": LotteryConfig},
         "sparse": {"train": TrainConfig, "sparse": SparseConfig}}
IDENTITY = {"lottery": LotteryRun, "sparse": SparseRun}  # the store identity of a multi-config kind
OPTIONS = {"retries": int, "backend": str, "workers": int, "address": str, "checkpoint_every": int,
           "replicates": int}


@dataclass(frozen=True)
class Trial:
    """One point of a sweep: the configs it runs and the grid values that made it."""

    index: int
    kind: str                 # "train", "lottery" or "sparse"
    configs: tuple            # (TrainConfig,), (TrainConfig, LotteryConfig) or (TrainConfig, SparseConfig)
    overrides: dict           # grid key -> value (as written in the file)

    @property
    def label(self) -> str:
        return _label(self.overrides)


# ---- the sweep file ------------------------------------------------------------------

def load_sweep(path: str | Path) -> tuple[list[Trial], dict]:
    """Read a sweep file: (trials of the expanded grid, run options of its [sweep] table)."""
    path = Path(path)
    doc = C.load_toml(path)
    unknown = sorted(set(doc) - {"kind", "base", "grid", "sweep"})
    if unknown:
        raise ConfigError(f"unknown key {unknown[0]!r} in {path}; a sweep file has kind, [base], [grid], [sweep]")
    kind = doc.get("kind")
    if kind is None:
        raise ConfigError(f"missing key 'kind' in {path}: {' or '.join(repr(k) for k in KINDS)}")
    if kind not in KINDS:
        raise ConfigError(f"kind: got {kind!r} in {path}, expected one of {', '.join(KINDS)}")
    for table in ("base", "grid", "sweep"):
        if not isinstance(doc.get(table, {}), dict):
            raise ConfigError(f"{table}: got {doc[table]!r} in {path}, expected a table [{table}]")
    classes = KINDS[kind]
    base, _ = _split(doc.get("base", {}), classes, "base", path)
    grid, keys = _split(doc.get("grid", {}), classes, "grid", path)
    for name, k in keys:
        v = grid[name][k]
        if not isinstance(v, list) or not v:
            raise ConfigError(f"grid key {k!r} in {path}: got {v!r}, expected a non-empty list of values")
        if k in base[name]:
            raise ConfigError(f"key {k!r} is in both [base] and [grid] of {path}; keep one")
    trials, seen = [], {}
    for i, combo in enumerate(itertools.product(*(grid[n][k] for n, k in keys))):
        overrides = {k: v for (_, k), v in zip(keys, combo)}
        values = {name: dict(base[name]) for name in classes}
        for (name, k), v in zip(keys, combo):
            values[name][k] = v
        try:
            configs = tuple(C.from_dict(cls, values[name], source=str(path)) for name, cls in classes.items())
        except ConfigError as e:
            where = "" if str(path) in str(e) else f"in {path}, "
            raise ConfigError(f"{e} ({where}trial {i}: {_label(overrides)})") from None
        trial = Trial(i, kind, configs, overrides)
        key = json.dumps([C.to_dict(c) for c in configs], sort_keys=True)
        if key in seen:
            raise ConfigError(f"{path}: trials {seen[key]} and {i} have the same config "
                              f"({trial.label}); remove the duplicate grid value")
        seen[key] = i
        trials.append(trial)
    options = _options(doc.get("sweep", {}), path)
    if "replicates" in options and kind != "sparse":
        hint = "set it in [base] or [grid]" if kind == "lottery" else "vary init_seed in [grid]"
        raise ConfigError(f"replicates in [sweep] of {path} applies to kind = \"sparse\" only; "
                          f"for a {kind} sweep, {hint}")
    return trials, options


def _split(values: dict, classes: dict, table: str, path: Path) -> tuple[dict[str, dict], list[tuple]]:
    """Assign the keys of [table] (flat, or in [table.<config>] sub-tables) to their config class:
    ({config name: {key: value}}, [(config name, key)] in file order)."""
    owners = {f: name for name, cls in classes.items() for f in C.field_names(cls)}
    per, order = {name: {} for name in classes}, []

    def put(name, k, v):
        if k in per[name]:
            raise ConfigError(f"key {k!r} is given twice in [{table}] of {path}")
        per[name][k] = v
        order.append((name, k))

    for k, v in values.items():
        if k in classes and isinstance(v, dict):
            for kk, vv in v.items():
                if kk not in C.field_names(classes[k]):
                    raise ConfigError(f"unknown key {kk!r} in [{table}.{k}] of {path}"
                                      f"{_hint(kk, C.field_names(classes[k]))}")
                put(k, kk, vv)
        elif k in owners:
            put(owners[k], k, v)
        else:
            raise ConfigError(f"unknown key {k!r} in [{table}] of {path}{_hint(k, owners)}")
    return per, order


def _hint(key: str, known) -> str:
    close = difflib.get_close_matches(key, list(known), n=1)
    return f"; did you mean {close[0]!r}?" if close else ""


def _options(values: dict, path: Path) -> dict:
    out = {}
    for k, v in values.items():
        if k not in OPTIONS:
            raise ConfigError(f"unknown key {k!r} in [sweep] of {path}; known keys: {', '.join(OPTIONS)}")
        tp, lo = OPTIONS[k], 0 if k == "retries" else 1
        if tp is int and (isinstance(v, bool) or not isinstance(v, int) or v < lo):
            raise ConfigError(f"{k}: got {v!r} in [sweep] of {path}, expected an integer >= {lo}")
        if tp is str and not isinstance(v, str):
            raise ConfigError(f"{k}: got {v!r} in [sweep] of {path}, expected a string")
        out[k] = v
    if out.get("backend", "process") not in BACKENDS:
        raise ConfigError(f"backend: got {out['backend']!r} in [sweep] of {path}, "
                          f"expected one of {', '.join(BACKENDS)}")
    return out


# ---- one trial, in a worker -------------------------------------------------------------

def experiment_path(trial: Trial, store) -> Path:
    """The store folder of a trial's experiment (the one `Store(store).experiment` names), not created."""
    identity = trial.configs[0] if trial.kind == "train" else IDENTITY[trial.kind](*trial.configs)
    return resolve_store(store) / f"{trial.kind}-{C.config_hash(trial.kind, identity)}"


def _summaries(folder: Path) -> set[str]:
    return {str(p) for p in folder.glob("**/summary.json")} if folder.is_dir() else set()


def run_trial(trial: Trial, store, data_dir=None, checkpoint_every: int = 1000, replicates: int = 1) -> dict:
    """Run one trial through the public API (quietly); return its status, folder and key metrics.
    `replicates` applies to sparse trials."""
    if trial.kind == "train":
        done_before = (experiment_path(trial, store) / "summary.json").exists()
        s = dense.train(trial.configs[0], store=store, data_dir=data_dir, progress=False,
                      checkpoint_every=checkpoint_every)
        return {"status": "skipped" if done_before else "done", **_train_metrics(s)}
    before = _summaries(experiment_path(trial, store))
    if trial.kind == "sparse":
        res = sparse_training.run(*trial.configs, store=store, data_dir=data_dir, progress=False,
                               replicates=replicates, checkpoint_every=checkpoint_every)
        agg = res["aggregate"]
        metrics = {"experiment": res["experiment"], "final_test_acc": agg["final_test_acc"],
                   "final_test_acc_std": agg.get("final_test_acc_std")}
    else:
        res = lottery_runner.run_lottery(*trial.configs, store=store, data_dir=data_dir, progress=False,
                          checkpoint_every=checkpoint_every)
        metrics = _lottery_metrics(res)
    changed = _summaries(Path(res["experiment"])) != before
    return {"status": "done" if changed or not before else "skipped", **metrics}


def _train_metrics(s: dict) -> dict:
    return {"experiment": s["experiment"], "es_iter": s["early_stop"]["iter"],
            "es_test_acc": s["early_stop"]["test_acc"], "final_test_acc": s["final"]["test_acc"],
            "wall_s": s["wall_time_s"]}


def _lottery_metrics(res: dict) -> dict:
    """The ticket at the last level: its density and test accuracy at early stopping (replicate mean)."""
    tickets = [a for a in res["aggregate"] if a["branch"] == "ticket"]
    out = {"experiment": res["experiment"]}
    if tickets:
        t = max(tickets, key=lambda a: a["level"])
        es_iter = t["es_iter"]  # a mean over replicates: shown as an integer when it is one
        out.update(level=t["level"], density=t["density"],
                   es_iter=int(es_iter) if float(es_iter).is_integer() else es_iter, es_test_acc=t["es_test_acc"])
    return out


# ---- the sweep ----------------------------------------------------------------------

def run_sweep(trials: list[Trial], *, backend: str | Executor = "process", workers: int | None = None,
              address: str | None = None, store=None, data_dir=None, retries: int = 1,
              progress: bool = True, checkpoint_every: int = 1000, replicates: int = 1) -> list[dict]:
    """Run every trial not yet done; return one row per trial, in trial order.

    A row: trial, overrides, status (done / skipped / failed), attempts, experiment (folder),
    the key metrics (train: es_iter, es_test_acc, final_test_acc, wall_s; lottery: the last
    level's level, density, es_iter, es_test_acc; sparse: final_test_acc and its std over the
    `replicates`), time_s in this sweep, and error if failed.
    `backend` may also be an executor from `ticketlab.engine.parallel.make_executor`, used and left open.
    Progress lines go to stderr. On KeyboardInterrupt: workers stopped, the interrupt re-raised.
    """
    if isinstance(retries, bool) or not isinstance(retries, int) or retries < 0:
        raise ConfigError(f"retries: got {retries!r}, expected an integer >= 0")
    # absolute paths: workers (Ray's especially) need not share this process's working directory
    store = str(resolve_store(store).absolute())
    data_dir = str(Path(data_dir).expanduser().absolute()) if data_dir is not None else None
    say = (lambda s: print(s, file=sys.stderr, flush=True)) if progress else (lambda s: None)
    rows: dict[int, dict] = {}
    todo = []
    for t in trials:
        summary = experiment_path(t, store) / "summary.json"
        if t.kind == "train" and summary.exists():
            s = {**json.loads(summary.read_text()), "experiment": str(summary.parent)}
            rows[t.index] = _row(t, {"status": "skipped", **_train_metrics(s)}, 0, 0.0)
        else:
            todo.append(t)
    name = backend if isinstance(backend, str) else type(backend).__name__
    say(f"sweep: {len(trials)} trials, {len(rows)} finished before, {len(todo)} sent to the {name} backend")
    if not todo:
        return [rows[t.index] for t in trials]
    own = isinstance(backend, str)
    ex = make_executor(backend, workers, address) if own else backend
    try:
        _dispatch(ex, todo, rows, len(trials), say, retries=retries,
                  args=(store, data_dir, checkpoint_every, replicates))
    except KeyboardInterrupt:
        _stop(ex)
        own = False
        left = len(trials) - len(rows)
        say(f"sweep interrupted: {len(rows)} of {len(trials)} trials finished, {left} not; workers stopped. "
            f"Run the same command again to skip the finished trials and resume the others.")
        raise
    finally:
        if own:
            ex.shutdown()
    return [rows[t.index] for t in trials]


def _dispatch(ex: Executor, todo: list[Trial], rows: dict, n_total: int, say, *, retries: int, args) -> None:
    queue = deque((t, 1) for t in todo)
    running = {}
    capacity = max(1, int(getattr(ex, "workers", 1)))
    folder = {t.index: experiment_path(t, args[0]) for t in todo}
    busy = set()  # folders with a trial running: trials sharing a folder run one after the other
    while queue or running:
        # submit no more than the executor runs at once: nothing waits inside it to be cancelled
        while len(running) < capacity:
            i = next((i for i, (t, _) in enumerate(queue) if folder[t.index] not in busy), None)
            if i is None:
                break
            t, attempt = queue[i]
            del queue[i]
            busy.add(folder[t.index])
            running[ex.submit(run_trial, t, *args)] = (t, attempt, time.perf_counter())
        done, _ = wait(running, return_when=FIRST_COMPLETED)
        for f in done:
            t, attempt, t0 = running.pop(f)
            busy.discard(folder[t.index])
            try:
                result = f.result()
            except Exception as e:
                if attempt <= retries:
                    say(f"trial {t.index} ({t.label}) failed, retrying ({attempt}/{retries}): {error_text(e)}")
                    queue.append((t, attempt + 1))
                    continue
                result = {"status": "failed", "experiment": str(experiment_path(t, args[0])), "error": error_text(e)}
            rows[t.index] = row = _row(t, result, attempt, time.perf_counter() - t0)
            say(f"[{len(rows)}/{n_total}] {_progress_line(row, t)}")


def _progress_line(row: dict, t: Trial) -> str:
    if "error" in row:
        outcome = row["error"]
    elif row.get("es_test_acc") is not None:
        outcome = f"es_test_acc={row['es_test_acc']:.4f}"
    elif row.get("final_test_acc") is not None:
        outcome = f"final_test_acc={row['final_test_acc']:.4f}"
    else:
        outcome = ""
    return (f"trial {t.index} {row['status']} ({t.label}) {Path(row['experiment']).name}: {outcome} "
            f"({row['time_s']:.1f} s)")


def _row(t: Trial, result: dict, attempts: int, seconds: float) -> dict:
    return {"trial": t.index, "overrides": dict(t.overrides), "attempts": attempts,
            "time_s": round(seconds, 3), **result}


def _stop(ex: Executor) -> None:
    """Cancel and kill everything, ignoring further Ctrl-C meanwhile (a second one must not leave
    workers behind)."""
    main = threading.current_thread() is threading.main_thread()
    old = signal.signal(signal.SIGINT, signal.SIG_IGN) if main else None
    try:
        if hasattr(ex, "terminate"):
            ex.terminate()
        else:
            ex.shutdown(wait=False, cancel_futures=True)
    finally:
        if main:
            signal.signal(signal.SIGINT, old)


# ---- output ---------------------------------------------------------------------------

def _label(overrides: dict) -> str:
    return ", ".join(f"{k}={_short(v)}" for k, v in overrides.items()) or "base"


def _short(v) -> str:
    return json.dumps(v, separators=(",", ":")) if isinstance(v, (dict, list)) else str(v)


METRICS = ("level", "density", "es_iter", "es_test_acc", "final_test_acc", "final_test_acc_std")


def format_table(rows: list[dict]) -> str:
    """The sweep's summary: one line per trial, grid values as columns, then status and metrics."""

    keys = list(dict.fromkeys(k for r in rows for k in r.get("overrides", {})))
    metrics = [m for m in METRICS if any(r.get(m) is not None for r in rows)]
    cells = []
    for r in rows:
        c = {"trial": r["trial"], "status": r["status"], "experiment": Path(r.get("experiment", "")).name,
             "attempts": r.get("attempts"), "time_s": f"{r.get('time_s', 0):.1f}"}
        c.update({k: _short(r["overrides"][k]) for k in keys if k in r.get("overrides", {})})
        c.update({m: r.get(m) for m in metrics})
        if r.get("error"):
            c["error"] = r["error"] if len(r["error"]) <= 80 else r["error"][:77] + "..."
        cells.append(c)
    cols = ["trial", *keys, "status", "experiment", *metrics, "attempts", "time_s"]
    if any("error" in c for c in cells):
        cols.append("error")
    return text_table(cells, cols)


def run_file(path, *, backend: str | None = None, workers: int | None = None, address: str | None = None,
             store=None, data_dir=None, retries: int | None = None, progress: bool = True) -> list[dict]:
    """Load a sweep file and run it (`api.sweep`); arguments given (not None) override its [sweep] options."""
    trials, options = load_sweep(path)
    given = dict(backend=backend, workers=workers, address=address, retries=retries)
    options.update({k: v for k, v in given.items() if v is not None})
    return run_sweep(trials, store=store, data_dir=data_dir, progress=progress, **options)


def command(path, **kwargs) -> list[dict]:
    """`ticketlab sweep FILE`: `run_file`, then print the table. Raises TicketlabError after the
    table if any trial failed (so the command exits non-zero)."""
    set_threads(1)  # the inline backend trains in this process; the others only wait here
    rows = run_file(path, **kwargs)
    print(format_table(rows))
    failed = [r["trial"] for r in rows if r["status"] == "failed"]
    if failed:
        raise TicketlabError(f"{len(failed)} of {len(rows)} trials failed (trials {', '.join(map(str, failed))}); "
                             f"run the same command again to retry them")
    return rows


__all__ = ["Trial", "load_sweep", "run_sweep", "run_file", "run_trial", "format_table", "command",
           "experiment_path"]
