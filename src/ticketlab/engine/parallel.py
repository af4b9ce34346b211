"""One executor abstraction for running independent jobs in parallel (sweeps, IMP replicates).

    from ticketlab.engine.parallel import make_executor
    with make_executor("process", workers=2) as ex:
        futures = [ex.submit(fn, x) for x in xs]    # fn: a module-level function, picklable args

Every backend returns a `concurrent.futures.Executor` whose `submit` gives standard Futures, plus:
- `workers`: how many jobs it runs at once (submit at most this many to keep nothing queued
  inside the executor, so an interrupt has nothing to cancel there);
- `terminate()`: cancel what has not started and kill what is running, now. Runs through
  `ticketlab.api` write their files atomically and hold their locks as open files, so a killed
  job leaves a resumable checkpoint and no stale lock. Call it on KeyboardInterrupt: process
  workers ignore SIGINT, so `shutdown(wait=True)` would wait for the running jobs to finish.

Backends:
- `inline`: runs each job in the calling process, inside `submit` (tests, debugging, pdb).
  Exceptions go into the Future; KeyboardInterrupt propagates.
- `process` (default): a `ProcessPoolExecutor` of single-thread workers. Measured on 2 cores
  (docs/performance.md §2: 2 single-thread processes beat 1 process with 2 threads;
  oversubscription costs 10-30x). Workers come from a *forkserver* that has imported
  `ticketlab.api` (and so torch) and `torch._dynamo` (what the first fused Adam step imports) once: 2 workers ready in ≈1.7 s, against 2.6-6.3 s for `spawn`
  (each child imports torch) and 0.14 s for `fork`. Plain fork is not used: it copies a parent
  that may hold OpenMP/MKL thread pools and other threads (tqdm, Ray), a known cause of hangs; the
  forkserver is a fresh single-threaded process. Workers ignore SIGINT (Ctrl-C in a terminal
  reaches the whole process group): the parent decides, and `terminate()`s them. If a worker dies
  (killed, out of memory), the pool stops every worker (ProcessPoolExecutor's rule): all running
  jobs fail with `BrokenProcessPool`, and the next `submit` starts a fresh pool. As with any non-fork start method, each worker imports the
  calling script as `__mp_main__`: a script using this backend must guard its entry point with
  `if __name__ == "__main__":` (the `ticketlab` command does).
- `ray` (extra `dist`: `pip install 'ticketlab[dist]'`): each job is a `@ray.remote(num_cpus=1)`
  task with Ray's own retries off (callers count retries). With no `address`, a local Ray instance
  is started (≈4-6 s here, plus ≈1.5 s to shut down) and bound to the loopback interface only,
  without the dashboard and with usage statistics off; `shutdown()` ends it. With `address` (e.g. "auto" or "10.0.0.5:6379"), the
  executor connects to an existing cluster, whose nodes need ticketlab installed and the results
  store on a shared filesystem; `shutdown()` only disconnects.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
from concurrent.futures import Executor, Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool

import torch

from ticketlab.core.errors import ConfigError, TicketlabError
from ticketlab.engine.forkserver import context as _context, cpu_count
from ticketlab.training import device as _device

BACKENDS = ("inline", "process", "ray")
_THREAD_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")


def worker_init() -> None:
    """Make this process a single-thread worker: one torch intra-op thread, OMP/MKL threads 1.

    The environment variables also reach any process this worker starts; call this before
    importing torch where possible (OpenMP reads them when it loads).
    """
    for var in _THREAD_VARS:
        os.environ[var] = "1"
    import torch

    torch.set_num_threads(1)
    try:
        torch.set_num_interop_threads(1)
    except RuntimeError:
        pass  # already set in this process, or inter-op work already ran: intra-op is what matters


def _process_worker_init() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent handles Ctrl-C and terminates us
    worker_init()


def make_executor(backend: str = "process", workers: int | None = None, address: str | None = None, *,
                  device: str = "cpu") -> Executor:
    """An executor for `backend` ("inline", "process" or "ray"); see the module docstring.

    `workers`: parallel jobs (default: this machine's CPUs; for Ray, the cluster's CPUs).
    `address`: Ray only; an existing cluster to join instead of starting a local one.
    `device`: Ray only; the jobs' device setting: on CUDA each asks for a GPU
    (`ticketlab.training.device.ray_resources`).
    """
    if backend not in BACKENDS:
        raise ConfigError(f"backend: got {backend!r}, expected one of {', '.join(BACKENDS)}")
    if workers is not None and (isinstance(workers, bool) or not isinstance(workers, int) or workers < 1):
        raise ConfigError(f"workers: got {workers!r}, expected an integer >= 1")
    if address is not None and backend != "ray":
        raise ConfigError(f"address: only the ray backend joins a cluster (backend is {backend!r})")
    if backend == "inline":
        return InlineExecutor()
    if backend == "process":
        return ProcessExecutor(workers or cpu_count())
    return RayExecutor(workers, address, device=device)


class InlineExecutor(Executor):
    """Runs each job at submit time in the calling process; returns completed Futures."""

    workers = 1

    def submit(self, fn, /, *args, **kwargs) -> Future:
        f = Future()
        try:
            result = fn(*args, **kwargs)
        except Exception as e:  # KeyboardInterrupt / SystemExit propagate to the caller
            f.set_exception(e)
        else:
            f.set_result(result)
        return f

    def terminate(self) -> None:
        pass


class ProcessExecutor(Executor):
    """A pool of single-thread worker processes (forkserver), restarted if a worker dies."""

    def __init__(self, workers: int):
        self.workers = workers
        self._pool = self._new_pool()

    def _new_pool(self) -> ProcessPoolExecutor:
        return ProcessPoolExecutor(self.workers, mp_context=_context(), initializer=_process_worker_init)

    def submit(self, fn, /, *args, **kwargs) -> Future:
        try:
            return self._pool.submit(fn, *args, **kwargs)
        except BrokenProcessPool:  # a worker died earlier; its futures already carry the error
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = self._new_pool()
            return self._pool.submit(fn, *args, **kwargs)

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        self._pool.shutdown(wait=wait, cancel_futures=cancel_futures)

    def terminate(self) -> None:
        """Cancel pending jobs and kill the workers (SIGTERM, then SIGKILL after 5 s)."""
        pool = self._pool
        if hasattr(pool, "terminate_workers"):  # Python >= 3.14
            pool.terminate_workers()
            return
        procs = list((getattr(pool, "_processes", None) or {}).values())
        pool.shutdown(wait=False, cancel_futures=True)
        for p in procs:
            if p.is_alive():
                p.terminate()
        for p in procs:
            p.join(5)
            if p.is_alive():
                p.kill()
                p.join()


def _ray_call(fn, args, kwargs):
    worker_init()
    return fn(*args, **kwargs)


class RayExecutor(Executor):
    """Jobs as Ray tasks (one CPU each) on a local loopback-only instance or an existing cluster."""

    def __init__(self, workers: int | None = None, address: str | None = None, *, device: str = "cpu"):
        try:
            import ray
        except ImportError:
            raise ConfigError("backend ray needs the `dist` extra: pip install 'ticketlab[dist]'") from None
        self._ray = ray
        self._refs: dict[Future, object] = {}
        self._connected = False  # whether shutdown() should disconnect (and end a local instance)
        os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
        if not ray.is_initialized():
            if address is None:
                _start_local_ray(ray, workers)
            else:
                ray.init(address=address, log_to_driver=False, logging_level=logging.ERROR)
            self._connected = True
        cpus = int(ray.cluster_resources().get("CPU", 1))
        self.workers = min(workers, cpus) if workers else cpus
        self.resources = _device.ray_resources(device)  # a trial on CUDA asks for its own GPU
        self._remote = ray.remote(**self.resources, max_retries=0)(_ray_call)

    def submit(self, fn, /, *args, **kwargs) -> Future:
        """A Future of the job; its exception is the job's own (a `TicketlabError` stays one line),
        not Ray's `RayTaskError` wrapper, whose message carries the worker's traceback."""
        ref = self._remote.remote(fn, args, kwargs)
        f = Future()
        self._refs[f] = ref

        def settle(inner: Future) -> None:
            self._refs.pop(f, None)
            if f.done():  # cancelled by the caller meanwhile
                return
            e = inner.exception() if not inner.cancelled() else None
            if inner.cancelled():
                f.cancel()
            elif e is None:
                f.set_result(inner.result())
            else:
                cause = getattr(e, "cause", None)  # ray.exceptions.RayTaskError: the job's exception
                f.set_exception(cause if isinstance(cause, Exception) else e)
        ref.future().add_done_callback(settle)
        return f

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        ray = self._ray
        if cancel_futures:
            for ref in list(self._refs.values()):
                ray.cancel(ref)  # not started: dropped; running: interrupted
        if wait:
            for f in list(self._refs):
                try:
                    f.result()
                except BaseException:
                    pass
        if self._connected and ray.is_initialized():
            ray.shutdown()
        self._connected = False

    def terminate(self) -> None:
        """Cancel every job and kill the workers running them, then shut down."""
        for ref in list(self._refs.values()):
            try:
                self._ray.cancel(ref, force=True)
            except Exception:  # already finished, or the cluster is going away
                pass
        self._refs.clear()
        self.shutdown(wait=False)


def _start_local_ray(ray, workers: int | None) -> None:
    """Start a local Ray instance bound to 127.0.0.1 only (no dashboard, no usage stats).

    Ray binds its servers to the node IP, which on Linux is the outward-facing address. Ray's
    documented switch for single-machine use (the default on macOS and Windows),
    RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0, makes the node IP the loopback address; Ray reads it when
    imported, so the already-imported constant is set too, and both are restored after start-up
    (the started processes keep their copy). Raises TicketlabError if Ray ends up elsewhere.
    """
    var = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"
    consts = sys.modules.get("ray._private.ray_constants")
    old_env, old_const = os.environ.get(var), getattr(consts, "ENABLE_RAY_CLUSTER", None)
    os.environ[var] = "0"
    if old_const is not None:
        consts.ENABLE_RAY_CLUSTER = False
    try:
        ray.init(address="local", num_cpus=workers, include_dashboard=False, log_to_driver=False,
                 logging_level=logging.ERROR)
    finally:
        if old_env is None:
            os.environ.pop(var, None)
        else:
            os.environ[var] = old_env
        if old_const is not None:
            consts.ENABLE_RAY_CLUSTER = old_const
    ip = ray.util.get_node_ip_address()
    if not (ip.startswith("127.") or ip == "::1"):
        ray.shutdown()
        raise TicketlabError(f"the local Ray instance bound to {ip}, not the loopback interface; "
                             f"start a cluster yourself (`ray start --head --node-ip-address ...`) "
                             f"and pass its address")


def error_text(e: BaseException) -> str:
    """One line for a job's exception: Ray's wrapper removed, 'Type: message'."""
    cause = getattr(e, "cause", None)  # ray.exceptions.RayTaskError wraps the job's exception
    if isinstance(cause, BaseException):
        e = cause
    if isinstance(e, BrokenProcessPool):
        return ("BrokenProcessPool: a worker process died (killed, out of memory, or failed to start: "
                "see its error above)")
    msg = str(e).strip().splitlines()
    return f"{type(e).__name__}: {msg[0] if msg else ''}".rstrip(": ")


def set_threads(n: int | None = None) -> None:
    """One torch thread per process by default: measured here, 2 threads can run up to 30x
    slower when another process holds a core (docs/performance.md §2)."""
    torch.set_num_threads(n or 1)


__all__ = ["BACKENDS", "set_threads", "make_executor", "worker_init", "cpu_count", "error_text",
           "InlineExecutor", "ProcessExecutor", "RayExecutor"]
