"""Running a sweep's trials as independent jobs on an executor (`ticketlab.engine.parallel`:
inline, a process pool, or Ray), with skipping, retries and Ctrl-C.

Each trial runs its kind's experiment function (`ticketlab.sweep.kinds`) in a worker, one torch
thread per worker, so its results land in the store folder the hand-run command would use, and
everything the store does holds: finished work is not redone, interrupted work resumes from its
last checkpoint.

- Skipping: a trial whose experiment has a summary.json of its own (a `train` trial) is reported
  `skipped` without dispatch. Other trials are always dispatched: whether they are complete depends
  on their run shape (levels, replicates, controls), which the experiment function works out
  cheaply, training nothing when all is there. They are reported `skipped` when no run finished
  during the call.
- Failures: a trial that raises is retried up to `retries` times (at the back of the queue), then
  reported `failed` with its error; the sweep goes on. A worker process that dies (killed, out of
  memory) takes its pool down: every trial running at that moment counts a failed attempt and is
  retried on a fresh pool, resuming from its last checkpoint.
- Ctrl-C: pending trials are cancelled and the workers killed (their runs keep their last
  checkpoint and release their locks); KeyboardInterrupt is re-raised (the CLI exits with 130).
  Running the same command again skips finished trials and resumes the others.
- Trials that share an experiment folder (trials differing only in run shape: levels, replicates,
  controls) run one after the other, never at once: the later one extends the earlier one's runs.
- A trial runs in one process (workers=1, the kind's default stack): the sweep's parallelism is
  across trials. A batched kind (teacher_student) runs all its trials in one call in this process,
  its runs stacked across trials and spread over `workers` processes, as its own command does.
"""

from __future__ import annotations

import dataclasses
import math
import signal
import sys
import threading
import time
from collections import deque
from concurrent.futures import FIRST_COMPLETED, Executor, wait
from pathlib import Path
from typing import Callable

import torch

from ticketlab.core import progress as _progress
from ticketlab.core.errors import ConfigError
from ticketlab.engine import calibrate
from ticketlab.engine.options import RunOptions
from ticketlab.engine.parallel import cpu_count, error_text, make_executor, set_threads
from ticketlab.engine.store import resolve_store
from ticketlab.sweep.grammar import Trial
from ticketlab.sweep.kinds import KINDS, Context, summaries, train_metrics
from ticketlab.training import determinism as _determinism, device as _device, precision as _precision
from ticketlab.training.rundir import read_json


def experiment_path(trial: Trial, store) -> Path | None:
    """The store folder of a trial's experiment (the one `Store(store).experiment` names), not
    created; None for a kind whose folder is known only once it runs (transfer)."""
    kind = KINDS[trial.kind]
    return kind.folder(trial.configs, store) if kind.folder else None


def _context(trial_kind: str, store, data_dir, options: RunOptions, replicates: int) -> Context:
    return Context(store, data_dir, options.resolved(trial_kind, runs=1), replicates)


def run_trial(trial: Trial, store, data_dir=None, checkpoint_every: int | None = None, replicates: int = 1,
              options: RunOptions | None = None, slot: int = 0) -> dict:
    """Run one trial of a non-batched kind in this process (quietly: no bars unless `options` say
    otherwise, no INFO lines; workers=1 unless `options` say otherwise); return its status, folder
    and key metrics. `replicates` applies to sparse trials. `run_trials` runs joined trials.

    The options' device, precision and deterministic mode become this process's, as in the API's run
    functions; `slot` is the trial's place among those running at once (0, 1, ...), so that on a
    machine with several GPUs trial slots take their own (`ticketlab.training.device.for_worker`,
    evaluated here, in the worker: a Ray worker sees only the GPU Ray gave it)."""
    return run_trials([trial], store, data_dir, checkpoint_every, replicates, options, slot)[0]


def run_trials(trials: list[Trial], store, data_dir=None, checkpoint_every: int | None = None, replicates: int = 1,
               options: RunOptions | None = None, slot: int = 0) -> list[dict]:
    """`run_trial` for trials of one joining kind with one join key (`Kind.joins`: sparse points on one
    training recipe), in one call whose runs share stacks; one result per trial, in order."""
    opts = RunOptions.build(options or RunOptions(workers=1, progress=False), checkpoint_every=checkpoint_every)
    _determinism.use(opts.deterministic)  # first: cuBLAS reads its workspace setting when CUDA starts
    _device.use(_device.for_worker(opts.device, slot))
    _precision.use(opts.precision)
    kind = KINDS[trials[0].kind]
    before = [summaries(experiment_path(t, store)) for t in trials]
    ctx = _context(trials[0].kind, store, data_dir, opts, replicates)
    with _progress.quiet():
        results = ([kind.run(trials[0].configs, ctx)] if len(trials) == 1
                   else kind.run_joined([t.configs for t in trials], ctx))
    out = []
    for result, was in zip(results, before):
        if "status" not in result:
            changed = summaries(result["experiment"]) != was
            result = {"status": "done" if changed or not was else "skipped", **result}
        out.append(result)
    return out


def jobs(todo: list[Trial], stack_of, spread: int, replicates: int) -> list[list[Trial]]:
    """The trials sent to a worker together. Trials of a joining kind with equal join keys whose stack
    (`stack_of(trial)`) is above 1 share jobs, so that their runs share stacks: split evenly into jobs
    of about one stack's runs (`replicates` each), and into at least `spread` of them (the workers
    that can take them: the GPUs, else the executor's) when there are that many trials. Every other
    trial is a job of its own. Jobs keep the trials' order (by first trial)."""
    buckets: dict = {}
    for t in todo:
        kind = KINDS[t.kind]
        stack = stack_of(t) if kind.joins is not None else 1
        key = (t.kind, kind.joins(t.configs), stack) if stack > 1 else ("alone", t.index)
        buckets.setdefault(key, []).append(t)
    out = []
    for key, ts in buckets.items():
        if key[0] == "alone":
            out.append(ts)
            continue
        per = max(1, key[2] // max(1, replicates))
        n = max(math.ceil(len(ts) / per), min(len(ts), max(1, spread)))
        size = math.ceil(len(ts) / n)
        out += [ts[i:i + size] for i in range(0, len(ts), size)]
    return sorted(out, key=lambda job: job[0].index)


# ---- the sweep ----------------------------------------------------------------------

def run_sweep(trials: list[Trial], *, backend: str | Executor = "process", address: str | None = None,
              store=None, data_dir=None, retries: int = 1, replicates: int = 1, options: RunOptions | None = None,
              workers: int | None = None, stack: int | None = None, threads: int | None = None,
              progress: bool | None = None, checkpoint_every: int | None = None, device: str | None = None,
              precision: str | None = None, deterministic: bool | None = None,
              calibrated: bool = False) -> list[dict]:
    """Run every trial not yet done; return one row per trial, in trial order.

    `options` (`ticketlab.engine.options.RunOptions`), or the keywords of its fields that build
    it: `workers` is the trials at once (default: one per core, at most one per trial; Ray: the
    cluster's CPUs); `stack` and `checkpoint_every` apply to every trial (default: the kind's);
    `threads` to this process (the inline backend; process workers use one each); `progress`
    prints a line per trial on stderr. With `calibrated` (`ticketlab sweep` owns its process) and no
    `stack` given, a trial stacks only where this machine's calibration says stacking its recipe wins
    (`ticketlab.engine.calibrate.options`, measured here, before the trials are sent).

    A row: trial, overrides, status (done / skipped / failed), attempts, experiment (folder),
    the key metrics (train: es_iter, es_test_acc, final_test_acc, stack_wall_s, stack_size; lottery: the last
    level's level, density, es_iter, es_test_acc (other tasks: metric, es_score); sparse:
    final_test_acc and its std over the `replicates`; transfer: the deepest transferred level's
    level, density, es_iter, es_test_acc; teacher_student: success, mean_best, eval_rel_mse),
    time_s in this sweep, and error if failed.
    `backend` may also be an executor from `ticketlab.engine.parallel.make_executor`, used and left open.
    On KeyboardInterrupt: workers stopped, the interrupt re-raised.
    """
    if isinstance(retries, bool) or not isinstance(retries, int) or retries < 0:
        raise ConfigError(f"retries: got {retries!r}, expected an integer >= 0")
    opts = RunOptions.build(options, workers=workers, stack=stack, threads=threads, progress=progress,
                            checkpoint_every=checkpoint_every, device=device, precision=precision,
                            deterministic=deterministic)
    if opts.threads is not None:
        set_threads(opts.threads)
    _precision.use(opts.precision)  # the store folders of this sweep's trials are keyed by it
    # absolute paths: workers (Ray's especially) need not share this process's working directory
    store = str(resolve_store(store).absolute())
    data_dir = str(Path(data_dir).expanduser().absolute()) if data_dir is not None else None
    say = (lambda s: print(s, file=sys.stderr, flush=True)) if opts.progress else (lambda s: None)
    rows: dict[int, dict] = {}
    todo, batched = [], []
    for t in trials:
        folder = experiment_path(t, store)
        summary = folder / "summary.json" if folder is not None else None
        if t.kind == "train" and summary.exists():
            s = {**read_json(summary), "experiment": str(summary.parent)}
            rows[t.index] = _row(t, {"status": "skipped", **train_metrics(s)}, 0, 0.0)
        elif KINDS[t.kind].batched:
            batched.append(t)
        else:
            todo.append(t)
    # a trial trains in one process, quietly; its stack and checkpoint interval are the sweep's
    trial_opts = dataclasses.replace(opts, workers=1, progress=False, threads=None)

    chosen: dict[int, RunOptions] = {}

    def per_trial(t: Trial) -> RunOptions:  # the trial's run options: the sweep's, calibrated; once a trial
        if t.index not in chosen:
            recipes = KINDS[t.kind].recipes
            chosen[t.index] = (trial_opts if not calibrated or recipes is None
                               else calibrate.options(trial_opts, recipes(t.configs, store)))
        return chosen[t.index]
    name = backend if isinstance(backend, str) else type(backend).__name__
    say(f"sweep: {len(trials)} trials, {len(rows)} finished before, {len(todo)} sent to the {name} backend"
        + (f", {len(batched)} run together in this process" if batched else ""))
    ex, own = backend, False
    try:
        if batched:
            _run_batched(batched, rows, len(trials), say, retries=retries, store=store, data_dir=data_dir,
                         options=dataclasses.replace(trial_opts, workers=opts.workers))
        if todo:
            if isinstance(backend, str):
                n = opts.workers
                if n is None and backend == "process":
                    n = min(cpu_count(), len(todo))  # no idle workers
                ex, own = make_executor(backend, n, address, device=opts.device), True
            spread = _gpus(opts.device) or max(1, int(getattr(ex, "workers", 1)))
            sent = jobs(todo, lambda t: per_trial(t).resolved(t.kind, runs=1).stack or 1, spread, replicates)
            _dispatch(ex, sent, rows, len(trials), say, retries=retries, store=store,
                      args=lambda t: (store, data_dir, None, replicates, per_trial(t)))
    except KeyboardInterrupt:
        if not isinstance(ex, str):
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


def _gpus(device: str) -> int:
    """The GPUs the sweep's trials spread over (0 when they do not train on CUDA)."""
    return torch.cuda.device_count() if _device.resolve(device).type == "cuda" else 0


def _dispatch(ex: Executor, todo: list[list[Trial]], rows: dict, n_total: int, say, *, retries: int, store,
              args: Callable[[Trial], tuple]) -> None:
    # `todo`: the jobs (`jobs`), each one trial or trials whose runs share stacks
    queue = deque((job, 1) for job in todo)
    running = {}
    slots = {}  # the slot of each running job: its GPU on a several-GPU machine
    capacity = max(1, int(getattr(ex, "workers", 1)))
    busy_keys = {t.index: _busy_key(t, store) for job in todo for t in job}
    busy = set()  # folders with a trial running: trials sharing a folder run one after the other

    def keys(job):
        return {busy_keys[t.index] for t in job}
    while queue or running:
        # submit no more than the executor runs at once: nothing waits inside it to be cancelled
        while len(running) < capacity:
            i = next((i for i, (job, _) in enumerate(queue) if not keys(job) & busy), None)
            if i is None:
                break
            job, attempt = queue[i]
            del queue[i]
            busy.update(keys(job))
            slot = min(set(range(len(running) + 1)) - set(slots.values()))
            t0 = time.perf_counter()  # before submit: the inline executor runs the job inside it
            f = ex.submit(run_trials, job, *args(job[0]), slot=slot)
            running[f], slots[f] = (job, attempt, t0), slot
        done, _ = wait(running, return_when=FIRST_COMPLETED)
        for f in done:
            job, attempt, t0 = running.pop(f)
            slots.pop(f)
            busy.difference_update(keys(job))
            try:
                results = f.result()
            except Exception as e:
                if attempt <= retries:
                    what = f"trial {job[0].index} ({job[0].label})" if len(job) == 1 else \
                        f"trials {', '.join(str(t.index) for t in job)} (one stack)"
                    say(f"{what} failed, retrying ({attempt}/{retries}): {error_text(e)}")
                    queue.append((job, attempt + 1))
                    continue
                results = [_failed(t, store, e) for t in job]
            for t, result in zip(job, results):
                rows[t.index] = row = _row(t, result, attempt, time.perf_counter() - t0)
                say(f"[{len(rows)}/{n_total}] {_progress_line(row, t)}")


def _busy_key(t: Trial, store) -> str:
    kind = KINDS[t.kind]
    return kind.shares(t.configs) if kind.shares else str(kind.folder(t.configs, store))


def _failed(t: Trial, store, e: BaseException) -> dict:
    folder = experiment_path(t, store)
    return {"status": "failed", "experiment": str(folder) if folder is not None else "", "error": error_text(e)}


def _run_batched(trials: list[Trial], rows: dict, n_total: int, say, *, retries: int, store, data_dir,
                 options: RunOptions) -> None:
    """Run the trials of a batched kind together, in this process (retried as a whole)."""
    kind = KINDS[trials[0].kind]
    if any(t.kind != kind.name for t in trials):
        raise ConfigError("a sweep runs the trials of one batched kind at a time")
    # like the trials' workers, the batch's are the sweep's: by default one per core
    ctx = Context(store, data_dir, options.resolved(kind.name, own_process=True), 1)
    before = {t.index: summaries(experiment_path(t, store)) for t in trials}
    for attempt in range(1, retries + 2):
        t0 = time.perf_counter()
        try:
            with _progress.quiet():  # the trials' runs, as the other kinds' (`run_trial`)
                results = kind.run([t.configs for t in trials], ctx)
        except Exception as e:
            if attempt <= retries:
                say(f"{len(trials)} {kind.name} trials failed, retrying ({attempt}/{retries}): {error_text(e)}")
                continue
            results = [_failed(t, store, e) for t in trials]
        for t, result in zip(trials, results):
            if "status" not in result:
                changed = summaries(result["experiment"]) != before[t.index]
                result = {"status": "done" if changed or not before[t.index] else "skipped", **result}
            rows[t.index] = row = _row(t, result, attempt, time.perf_counter() - t0)
            say(f"[{len(rows)}/{n_total}] {_progress_line(row, t)}")
        return


def _progress_line(row: dict, t: Trial) -> str:
    if "error" in row:
        outcome = row["error"]
    else:
        m = next((m for m in ("es_test_acc", "final_test_acc", "es_score", "success") if row.get(m) is not None), None)
        outcome = f"{m}={row[m]:.4f}" if m else ""
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


__all__ = ["run_sweep", "run_trial", "run_trials", "jobs", "experiment_path"]
