"""The `ticketlab` command line. Every command calls the function of the same name in
`ticketlab.api`, so the CLI and the Python API share one code path.

Configs come from flags, or from a TOML file (`--config FILE`) whose keys are the same
names with underscores; flags override the file. Errors a user can cause print one line
naming the key or file, with no traceback, and exit with status 2.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

from ticketlab.cli.common import ALL, DEVICE_FLAGS, GIVEN, _common, _config, _configs, _run_flags, run_flags, run_options, use_help, Parser  # noqa: F401
from ticketlab.core import config as C
from ticketlab.engine.options import RunOptions
from ticketlab.reports.tables import lottery_table, text_table as _table  # noqa: F401
from ticketlab.core.errors import TicketlabError
from ticketlab.engine import calibrate
from ticketlab.training import timing
from ticketlab.training.final_evals import FINAL_EVALS


# ---- commands ----------------------------------------------------------------------

def cmd_train(ns) -> None:
    from ticketlab import api
    from ticketlab.training.loop import TrainConfig
    cfg = _config(TrainConfig, ns)
    opts = run_options(ns)
    api.set_threads(opts.threads)
    s = api.train(cfg, store=ns.store, data_dir=ns.data_dir, tensorboard=ns.tensorboard, options=opts)
    es, fin = s["early_stop"], s["final"]
    print(_table([{"experiment": s["experiment"], "iterations": s["iterations"], "es_iter": es["iter"],
                   "es_test_acc": es["test_acc"], "final_test_acc": fin["test_acc"],
                   "stack_wall_s": timing.read(s)["stack_wall_time_s"], "stack_size": timing.read(s)["stack_size"]}],
                 ["experiment", "iterations", "es_iter", "es_test_acc", "final_test_acc", "stack_wall_s", "stack_size"]))
    if s.get("diverged"):
        print(f"diverged at iteration {s['diverged']['iteration']}: the training loss became NaN or infinite")


def cmd_lottery(ns) -> None:
    from ticketlab import api
    from ticketlab.experiments.lottery.trunk import LotteryConfig
    from ticketlab.engine.tasks import get_task
    train_cfg, cfg = _configs({"train": get_task(ns.task).config, "lottery": LotteryConfig}, ns)
    # the command owns its process: by default one worker per core, capped at the runs at once, and
    # stacking only where this machine's calibration says it wins (`ticketlab.engine.calibrate`)
    opts = calibrate.options(run_options(ns), [train_cfg]).resolved("lottery", api.lottery_width(cfg), own_process=True)
    api.set_threads(opts.threads)
    res = api.lottery(train_cfg, cfg, store=ns.store, data_dir=ns.data_dir, options=opts)
    print(f"experiment: {res['experiment']}")
    metric = res["aggregate"][0]["metric"] if res["aggregate"] else "test_acc"
    if metric == "eval_return":  # RL's headline: the final evaluations, not the early-stopping pick
        print(f"test return, mean over the last {FINAL_EVALS} evaluations of each run (mean ± std over replicates "
              "and draws; SEM: each run's standard error over its episodes, mean over runs)")
    else:
        print(f"{'test accuracy (%)' if metric == 'test_acc' else metric} at the early-stopping iteration and at the "
              "end (final), mean ± std over replicates and draws")
    print(lottery_table(res["aggregate"]))


def _ints(text: str, flag: str) -> list[int]:
    """The comma-separated integers of `flag` (at least one); a ConfigError naming the flag otherwise."""
    try:
        values = [int(v) for v in text.replace(",", " ").split()]
    except ValueError:
        values = []
    if not values:
        raise C.ConfigError(f"{flag}: got {text!r}, expected comma-separated integers")
    return values


def cmd_instability(ns) -> None:
    from ticketlab import api
    api.set_threads(getattr(ns, "threads", None))
    rows = api.instability(ns.experiment, level=ns.level, rewind_iters=_ints(ns.rewind_iters, "--rewind-iters"),
                           replicates=_ints(ns.replicates, "--replicates"), points=ns.points,
                           data_seeds=_ints(ns.data_seeds, "--data-seeds"), store=ns.store, data_dir=ns.data_dir,
                           progress=not ns.quiet, allow_inexact=ns.allow_inexact,
                           options=C.from_dict(RunOptions, {f: getattr(ns, f) for f in DEVICE_FLAGS if hasattr(ns, f)},
                                               source="the command line"))
    print(_table([{"replicate": r["replicate"], "level": r["level"], "remaining_%": f"{100 * r['density']:.2f}",
                   "k": r["rewind_iter"], "instability_%": f"{100 * r['instability']:.2f}",
                   "endpoint_err_%": " / ".join(f"{100 * e:.2f}" for e in r["endpoint_errors"]),
                   "max_err_%": f"{100 * max(r['errors']):.2f}", "rewind_source": r["rewind_source"]}
                  for r in rows],
                 ["replicate", "level", "remaining_%", "k", "instability_%", "endpoint_err_%", "max_err_%",
                  "rewind_source"]))


def cmd_plot(ns) -> None:
    from ticketlab import api
    print("\n".join(api.plot(ns.experiments, ns.out, store=ns.store)))


def cmd_report(ns) -> None:
    from ticketlab import api
    print(api.report(ns.experiment, ns.out, store=ns.store))


def cmd_export(ns) -> None:
    from ticketlab import api
    path = api.export(ns.experiment, ns.out, level=ns.level, replicate=ns.replicate, branch=ns.branch,
                      store=ns.store, min_sparsity=ns.min_sparsity)
    print(json.dumps({"out": str(path), "bytes": path.stat().st_size}))


def cmd_sweep(ns) -> None:
    from ticketlab import sweep
    given = {f: getattr(ns, f) for f in GIVEN if hasattr(ns, f)}
    sweep.command(ns.file, backend=ns.backend, address=ns.address, store=ns.store, data_dir=ns.data_dir,
                  retries=ns.retries, progress=False if ns.quiet else None, **given)


def cmd_sparse_train(ns) -> None:
    from ticketlab import api
    from ticketlab.experiments.sparse_training import SparseConfig
    from ticketlab.training.loop import TrainConfig
    train_cfg, cfg = _configs({"train": TrainConfig, "sparse": SparseConfig}, ns, grid=True)
    points = sparse_points(ns, cfg)
    opts = calibrate.options(run_options(ns), [train_cfg])  # replicates stack only where stacking wins here
    api.set_threads(opts.threads)
    swept = bool(points[0][1])
    res = api.sparse_train(train_cfg, [c for c, _ in points] if swept else cfg, store=ns.store,
                           data_dir=ns.data_dir, replicates=ns.replicates, options=opts)
    for r, (_, label) in zip(res if swept else [res], points):
        print(f"experiment: {r['experiment']}" + (f"  ({label})" if swept else ""))
        keys = [k for k in ("replicate", "sparsity", "es_iter", "converged", "es_test_acc", "final_test_acc",
                            "stack_wall_time_s", "stack_size")
                if r["rows"] and k in r["rows"][0]]
        print(_table(r["rows"], keys))
        for a in r["aggregate"] if isinstance(r["aggregate"], list) else [r["aggregate"]]:
            print("mean: " + ", ".join(f"{k}={v:.4f}" if isinstance(v, float) else f"{k}={v}" for k, v in a.items()))


def sparse_points(ns, cfg) -> list[tuple]:
    """sparse-train's points: [(cfg, "")] without a grid; else the grid of the --config file's [grid]
    table and of `--sweep KEY=V1,V2` over `cfg`, as (config, label) pairs in the sweep grammar's
    order. As for `teacher-student`: a flag fixes its key (taking it out of the file's grid), and
    --sweep replaces the file's values of its key. SparseConfig keys only: the points share the
    training recipe, so their runs can share stacks."""
    from ticketlab.experiments.sparse_training import SparseConfig
    from ticketlab.sweep import grammar
    names, flags = C.field_names(SparseConfig), C.flags_to_dict(SparseConfig, ns)
    grid = {}
    if ns.config:
        doc = C.load_toml(ns.config)
        table = doc.get("grid", {})
        if not isinstance(table, dict) or not all(isinstance(v, list) and v for v in table.values()):
            raise C.ConfigError(f"[grid] of {ns.config}: expected a table of keys with non-empty lists of values")
        for k in table:
            if k not in names:
                raise C.ConfigError(f"{k!r} in [grid] of {ns.config}: sparse-train varies sparse-training keys "
                                    "only (the points share the training recipe; `ticketlab sweep` varies both)")
        in_file = set(doc) | set(doc["sparse"] if isinstance(doc.get("sparse"), dict) else {})
        for k in table:
            if k in in_file:
                raise C.ConfigError(f"{k!r} is both set and swept in {ns.config}; keep one")
        grid = {k: v for k, v in table.items() if k not in flags}
    swept = grammar.flag_grid(ns.sweep or [], {"sparse": SparseConfig}, "--sweep")
    for k in swept:
        if k in flags:
            raise C.ConfigError(f"--{k.replace('_', '-')} is both set and swept (--sweep {k}=...); keep one")
    grid.update(swept)
    if not grid:
        return [(cfg, "")]
    base = {k: v for k, v in C.to_dict(cfg).items() if k not in grid}
    sweep = grammar.Sweep("sparse", {"sparse": SparseConfig}, base, grid, {}, ns.config or "--sweep")
    return [(t.configs[0], t.label) for t in grammar.expand(sweep)]


def cmd_demo(ns) -> None:
    from ticketlab import api
    api.set_threads(1)
    from ticketlab.experiments.lottery.trunk import LotteryConfig
    width = api.lottery_width(LotteryConfig(**api.DEMO_LOTTERY))
    res = api.demo(store=ns.store, options=run_options(ns).resolved("demo", width, own_process=True))
    print(f"experiment: {res['experiment']}")
    print("MNIST-1D, 40-300-100-10 MLP, IMP 20%/level with reset to init, 2 replicates")
    print("test accuracy (%) at the early-stopping iteration (acc) and at the end (final_acc), mean ± std over "
          "replicates; the claim rests on final_acc (benchmarks/demo_mnist1d/README.md)")
    print(lottery_table(res["aggregate"]))
    print(f"plots:  {', '.join(p for p in res['plots'] if p.endswith('.png'))}")
    print(f"report: {res['report']}")


def cmd_ls(ns) -> None:
    from ticketlab import api
    rows = api.ls(store=ns.store)
    if not rows:
        print("no experiments in the store")
        return
    cols = ["experiment", "status", "model", "dataset", "iterations", "es_iter", "es_test_acc", "final_test_acc"]
    extra = sorted({k for r in rows for k in r} - set(cols))
    print(_table(rows, cols + extra))


def cmd_show(ns) -> None:
    from ticketlab import api
    print(json.dumps(api.show(ns.experiment, store=ns.store), indent=2))


def cmd_verify(ns) -> int:
    from ticketlab import api
    rows = api.verify(ns.experiments, store=ns.store, repair=ns.repair)
    if not rows:
        print("every file checks out")
        return 0
    print(_table([{**r, "derived": " ".join(r["derived"])} for r in rows], ["experiment", "file", "problem", "derived"]))
    if ns.repair:
        print("removed the runs listed under derived; run the same commands again to recompute them "
              "(a lottery run trains again in the stack it first trained in, so it is bit-identical; "
              "see <store>/repairs.jsonl)")
        return 0
    print("run `ticketlab verify --repair` to remove them and everything derived from them")
    return 1


def cmd_models(ns) -> None:
    from ticketlab.models import list_models
    names = list_models(ns.pattern)
    if not names:
        raise TicketlabError(f"no registered model matches {ns.pattern!r}; `ticketlab models` lists them all")
    print("\n".join(names))


def cmd_data_ls(ns) -> None:
    from ticketlab.data import dataset_status, list_datasets, resolve_data_dir
    print(f"data directory: {resolve_data_dir(ns.data_dir)}")
    rows = []
    for name in list_datasets():
        s = dataset_status(name, ns.data_dir)
        rows.append({"dataset": name, "present": s["present"], "verified": s["verified"],
                     "problem": s.get("problem") or ""})
    print(_table(rows, ["dataset", "present", "verified", "problem"]))


def cmd_data_fetch(ns) -> None:
    from ticketlab.data import fetch
    paths = fetch(ns.name, ns.data_dir, base_url=ns.base_url, progress=not ns.quiet)
    print(f"{ns.name}: {len(paths)} file(s) downloaded and verified" if paths else f"{ns.name}: already present and verified")


# Modules that add their own commands: each defines `register(sub)`, adding subparsers to the
# `ticketlab` command (domain studies that sit on top of the engine).
# The commands each adds are listed, so that a command line that runs another command skips it.
PLUGIN_COMMANDS: dict[str, tuple[str, ...]] = {
    "ticketlab.cli.teacher_student": ("teacher-student",),
    "ticketlab.cli.transfer": ("transfer", "transfer-plot"),
}
PLUGINS: tuple[str, ...] = tuple(PLUGIN_COMMANDS)
COMMANDS = ("train", "lottery", "instability", "plot", "report", "export", "sweep", "sparse-train", "demo", "ls",
            "show", "verify", "models", "data") + tuple(c for cs in PLUGIN_COMMANDS.values() for c in cs)


class _Unbuilt:
    """Stands in for the parser of a command this command line does not run: its flags are not built,
    which saves a fifth of a second of start-up (argparse and the config classes of every command)."""

    def __getattr__(self, name):
        return lambda *a, **k: self


class _Only:
    """The `ticketlab` subparsers, building only the command `only` (None: every command)."""

    def __init__(self, sub, only: str | None):
        self.sub, self.only = sub, only

    def add_parser(self, name: str, **kw):
        return self.sub.add_parser(name, **kw) if self.only in (None, name) else _Unbuilt()


def _command(argv: list[str] | None) -> str | None:
    """The command a command line runs, when it names a known one (else None: build them all, so
    that --help and a misspelt command's error list every command)."""
    argv = sys.argv[1:] if argv is None else argv
    first = next((a for a in argv if not a.startswith("-")), None)
    return first if first in COMMANDS else None


def _arg(argv: list[str] | None, flag: str, default: str) -> str:
    """The value of `flag` on the command line, read before parsing (it decides which flags exist)."""
    argv = sys.argv[1:] if argv is None else argv
    for i, a in enumerate(argv):
        if a == flag and i + 1 < len(argv):
            return argv[i + 1]
        if a.startswith(flag + "="):
            return a.split("=", 1)[1]
    return default


def _task_arg(argv: list[str] | None) -> str:
    """The `--task` value on the command line (its flags decide the lottery command's options)."""
    return _arg(argv, "--task", "classify")


def _sparse_flags(p: argparse.ArgumentParser, method: str) -> None:
    """sparse-train's SparseConfig flags: the common ones, then those of `method`'s class in
    `ticketlab.methods.sparse.METHODS`; the other methods' flags are accepted but not shown."""
    if isinstance(p, _Unbuilt):
        return
    from ticketlab.experiments.sparse_training import METHODS, SparseConfig, method_fields
    method = method or SparseConfig.method
    every = {n for m in METHODS for n in method_fields(m)}
    own = method_fields(method) if method in METHODS else []
    C.add_flags(p.add_argument_group("sparse training"), SparseConfig,
                [n for n in C.field_names(SparseConfig) if n not in every])
    if own:
        doc = (METHODS[method].__doc__ or "").strip().splitlines()[0].rstrip(".")
        C.add_flags(p.add_argument_group(f"method {method}: {doc}"), SparseConfig, own)
    C.add_flags(p, SparseConfig, every - set(own), hidden=True)


def parser(argv: list[str] | None = None, only: str | None = None) -> argparse.ArgumentParser:
    """The `ticketlab` parser; `only`: build that command's subparser alone (`main` does, for start-up)."""
    from ticketlab.engine.tasks import get_task, task_names
    from ticketlab.training.loop import TrainConfig
    ap = Parser(prog="ticketlab", description="Lottery tickets and sparse training.")  # one-line errors
    ap.add_argument("--debug", action="store_true", help="show the traceback of an unexpected error")
    sub = _Only(ap.add_subparsers(dest="command", required=True), only)

    p = sub.add_parser("train", help="train one dense model")
    _run_flags(p, "train")
    p.add_argument("--tensorboard", action="store_true", help="also log to TensorBoard (in the experiment folder)")
    C.add_flags(p, TrainConfig)
    p.set_defaults(fn=cmd_train)

    p = sub.add_parser("lottery", help="iterative magnitude pruning with rewinding, and its controls")
    _run_flags(p, "lottery", ALL)
    from ticketlab.experiments.lottery.trunk import LotteryConfig
    task = _task_arg(argv)
    p.add_argument("--task", default="classify", choices=task_names(),
                   help="the domain; `ticketlab lottery --task NAME --help` lists that task's training flags")
    task_config = get_task(task).config if task in task_names() else TrainConfig
    C.add_flags(p.add_argument_group(f"training ({task})"), task_config)
    C.add_flags(p.add_argument_group("lottery"), LotteryConfig)
    p.set_defaults(fn=cmd_lottery)

    p = sub.add_parser("instability", help="linear-mode-connectivity instability of a lottery ticket")
    p.add_argument("experiment", help="a lottery experiment (folder name, path or unique hash prefix)")
    p.add_argument("--level", type=int, required=True, help="the ticket's level (0: the dense network)")
    p.add_argument("--rewind-iters", default="0", help="rewind points k, comma-separated")
    p.add_argument("--replicates", default="0", help="replicates, comma-separated")
    p.add_argument("--points", type=int, default=11, help="points on the linear path (>= 3)")
    p.add_argument("--data-seeds", default="1000,1001", help="the two copies' data-order seeds")
    p.add_argument("--allow-inexact", action="store_true",
                   help="accept a reproduced rewind point that differs from the trunk's by float rounding")
    run_flags(p, "lottery", ("threads", "progress") + DEVICE_FLAGS)
    _common(p)
    p.set_defaults(fn=cmd_instability)

    p = sub.add_parser("plot", help="plot one or several experiments, overlaid (PNG and SVG)")
    p.add_argument("experiments", nargs="+", help="experiments to overlay (folder names, paths or unique hash prefixes)")
    p.add_argument("-o", "--out", default="plots", help="output folder")
    _common(p, data=False)
    p.set_defaults(fn=cmd_plot)

    p = sub.add_parser("report", help="write one self-contained HTML report of an experiment")
    p.add_argument("experiment", help="folder name, path, or unique hash prefix")
    p.add_argument("-o", "--out", default="report.html", help="the HTML file to write")
    _common(p, data=False)
    p.set_defaults(fn=cmd_report)

    p = sub.add_parser("export", help="write a ticket as a compact sparse model (CSR linear layers)")
    p.add_argument("experiment", help="a lottery experiment (folder name, path or unique hash prefix)")
    p.add_argument("--level", type=int, required=True, help="the ticket's pruning level (0: the dense network)")
    p.add_argument("--replicate", type=int, default=0, help="which replicate's ticket")
    p.add_argument("--branch", default="", help="a control branch folder, e.g. reinit_0 (default: the ticket)")
    p.add_argument("--min-sparsity", type=float, default=0.0,
                   help="keep a linear layer dense below this sparsity (CSR breaks even near 0.8 on CPU)")
    p.add_argument("-o", "--out", required=True, help="the file to write (a torch state file)")
    _common(p, data=False)
    p.set_defaults(fn=cmd_export)

    p = sub.add_parser("sweep", help="run a grid of train, lottery (any task), sparse-train, transfer or "
                       "teacher-student configs in parallel (see examples/sweep.toml)")
    p.add_argument("file", metavar="CONFIG.toml", help="the sweep file (see examples/sweep.toml)")
    _common(p)
    p.add_argument("--backend", choices=("inline", "process", "ray"), default=None,
                   help="default: the file's [sweep] backend, else process")
    p.add_argument("--address", default=None, help="ray: join this cluster (e.g. auto) instead of starting a local one")
    p.add_argument("--retries", type=int, default=None, help="re-runs of a failed trial (default: the file's, else 1)")
    run_flags(p, None)  # over the file's [sweep]; --workers: trials at once (ray: the cluster's CPUs)
    p.set_defaults(fn=cmd_sweep)

    p = sub.add_parser("sparse-train", help="sparse training from scratch: RigL, SET, SNFS, static, GMP, SNIP/GraSP/SynFlow")
    _run_flags(p, "sparse", ("stack", "threads", "progress", "checkpoint_every") + DEVICE_FLAGS)
    p.add_argument("--replicates", type=int, default=1, help="replicates (init and data seeds + r)")
    p.add_argument("--sweep", action="append", metavar="KEY=V1,V2",
                   help="points on this training recipe: a sparse-training key and its values (repeatable: "
                        "the grid of all), e.g. --sweep sparsity=0.8,0.9,0.95; runs of one method share stacks")
    C.add_flags(p.add_argument_group("training"), TrainConfig)
    _sparse_flags(p, _arg(argv, "--method", ""))
    p.set_defaults(fn=cmd_sparse_train)

    p = sub.add_parser("demo", help="a small lottery-ticket study on MNIST-1D, with table, plots and report")
    run_flags(p, "lottery", ("workers", "progress") + DEVICE_FLAGS)
    _common(p, data=False)
    p.set_defaults(fn=cmd_demo)

    p = sub.add_parser("ls", help="list the store's experiments with their key metrics")
    _common(p, data=False)
    p.set_defaults(fn=cmd_ls)

    p = sub.add_parser("show", help="show one experiment's config and results")
    p.add_argument("experiment", help="folder name, path, or unique hash prefix")
    _common(p, data=False)
    p.set_defaults(fn=cmd_show)

    p = sub.add_parser("verify", help="check the store's files against their checksums; list damaged ones "
                       "and the results derived from them")
    p.add_argument("experiments", nargs="*", help="experiments to check (default: all)")
    p.add_argument("--repair", action="store_true",
                   help="remove the damaged runs and everything derived from them, so the next run recomputes them")
    _common(p, data=False)
    p.set_defaults(fn=cmd_verify)

    p = sub.add_parser("models", help="list the registered models")
    p.add_argument("pattern", nargs="?", default="*", help="a glob over the model names")
    p.set_defaults(fn=cmd_models)

    p = sub.add_parser("data", help="list or fetch datasets")
    dsub = p.add_subparsers(dest="data_command", required=True)
    q = dsub.add_parser("ls", help="which datasets are present and verified")
    q.add_argument("--data-dir", default=None, help="data folder (default: $TICKETLAB_DATA or ~/.cache/ticketlab)")
    q.set_defaults(fn=cmd_data_ls)
    q = dsub.add_parser("fetch", help="download a dataset's original files and verify them")
    q.add_argument("name", help="a dataset name (see `ticketlab data ls`)")
    q.add_argument("--data-dir", default=None, help="data folder (default: $TICKETLAB_DATA or ~/.cache/ticketlab)")
    q.add_argument("--base-url", default=None, help="download from this URL instead of the canonical mirrors")
    q.add_argument("--quiet", action="store_true", help="no progress bar")
    q.set_defaults(fn=cmd_data_fetch)

    import importlib
    for name, commands in PLUGIN_COMMANDS.items():
        if only is None or only in commands:
            importlib.import_module(name).register(sub)
    use_help(ap)
    return ap


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `ticketlab` console script."""
    from ticketlab.core.progress import cli_logging
    debug = "--debug" in (sys.argv[1:] if argv is None else argv)
    try:
        ns, extra = parser(argv, only=_command(argv)).parse_known_args(argv)
        if extra:  # with where the command's flags are listed (parse_args would say only `ticketlab --help`)
            print(f"ticketlab: error: unrecognized arguments: {' '.join(extra)} (`ticketlab {ns.command} --help` "
                  f"lists the flags of {ns.command})", file=sys.stderr)
            return 2
        # a run's messages: INFO lines on stderr, through the progress bars; --quiet: warnings only
        with cli_logging(quiet=getattr(ns, "quiet", False)):
            return ns.fn(ns) or 0
    except TicketlabError as e:
        print(f"ticketlab: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("ticketlab: interrupted; run the same command again to resume", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `ticketlab show X | head`: the reader left; say nothing
        try:  # and let the interpreter's last flush of stdout find no pipe
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        except (OSError, ValueError, AttributeError):
            pass
        return 141
    except Exception as e:
        if debug:
            raise
        print(f"ticketlab: error: {_unexpected(e)}; run with --debug for the traceback", file=sys.stderr)
        return 1


def _unexpected(e: Exception) -> str:
    """One line for an error ticketlab did not expect: its type, message and the file involved."""
    msg = str(e).strip().splitlines()[0] if str(e).strip() else ""
    where = getattr(e, "filename", None)
    if where is None:  # the innermost ticketlab frame names the code, not the data file
        import traceback
        frames = [f for f in traceback.extract_tb(e.__traceback__) if "ticketlab" in f.filename]
        where = f"in {frames[-1].filename}:{frames[-1].lineno}" if frames else None
    return f"{type(e).__name__}: {msg}" + (f" ({where})" if where else "")


if __name__ == "__main__":
    sys.exit(main())
