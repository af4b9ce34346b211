"""The `ticketlab transfer` and `ticketlab transfer-plot` commands (Morcos et al. 2019; see
`ticketlab.experiments.transfer`). Both call `ticketlab.api.transfer` / `ticketlab.reports.transfer_plots`, so the CLI and
the Python API share one code path.

    ticketlab transfer SOURCE --target-dataset fashion-mnist --levels 3,7,11
    ticketlab transfer SOURCE --target-optimizer sgd --target-lr 0.1 --target-momentum 0.9
    ticketlab transfer --matrix examples/transfer_matrix.toml -o plots/
    ticketlab transfer-plot EXP1 EXP2 -o plots/ --density 0.05

The target is the source's training recipe with the `--target-*` flags applied (any TrainConfig key
but model, model_args and init); in a `--config` TOML file they go in a `[target]` table.
"""

from __future__ import annotations

import argparse
import dataclasses
import typing

from ticketlab.core import config as C
from ticketlab.core.atomic import check_out
from ticketlab.cli.common import ALL, _common, _configs, _run_flags, run_options
from ticketlab.reports.tables import text_table as _table
from ticketlab.core.errors import ConfigError
from ticketlab.engine import calibrate

PREFIX = "target__"


def _target_flags(group) -> None:
    """--target-<key> for every TrainConfig key a target may change."""
    from ticketlab.training.loop import TrainConfig
    from ticketlab.experiments.transfer import FIXED
    hints = typing.get_type_hints(TrainConfig)
    for f in dataclasses.fields(TrainConfig):
        if f.name in FIXED:
            continue
        flag = "--target-" + f.name.replace("_", "-")
        help_ = f"target: {f.metadata.get('help', '')} (default: the source's)"
        if hints[f.name] is bool:
            group.add_argument(flag, dest=PREFIX + f.name, default=argparse.SUPPRESS,
                               action=argparse.BooleanOptionalAction, help=help_)
        else:
            group.add_argument(flag, dest=PREFIX + f.name, default=argparse.SUPPRESS, metavar="V", help=help_)


def _fmt(mean, std) -> str:
    return "" if mean is None else f"{mean:.2f} ± {std:.2f}"


def transfer_table(agg: list[dict], metric: str = "es_test_acc") -> str:
    """Per level: weights remaining, and `metric` (mean ± std, %) of the transferred ticket, the
    random ticket and the target's own ticket, with the gaps (pp); the dense network last."""
    from ticketlab.experiments.transfer_matrix import summary
    rows = summary([{"source": "", "target": "", "aggregate": agg}], metric)
    out = [{"level": r["level"], "remaining_%": f"{r['remaining_%']:.2f}", "n": r["n"],
            "transfer_%": _fmt(r["transfer_acc_%"], r["transfer_std"]),
            "random_%": _fmt(r["random_acc_%"], r["random_std"]), "own_%": _fmt(r["own_acc_%"], r["own_std"]),
            "vs_random_pp": "" if r["gap_vs_random_pp"] is None else f"{r['gap_vs_random_pp']:+.2f}",
            "vs_own_pp": "" if r["gap_vs_own_pp"] is None else f"{r['gap_vs_own_pp']:+.2f}"} for r in rows]
    text = _table(out, ["level", "remaining_%", "n", "transfer_%", "random_%", "own_%", "vs_random_pp", "vs_own_pp"])
    dense = next((a for a in agg if a["branch"] == "dense"), None)
    if dense:
        text += f"\ndense on the target: {_fmt(100 * dense[metric], 100 * dense[metric + '_std'])} (n={dense['n']})"
    return text


def cmd_transfer(ns) -> None:
    from ticketlab import api
    if ns.out:  # before training, not after it
        from ticketlab.reports.transfer_plots import check_density
        check_out(ns.out, folder=True)
        check_density(ns.density)
    from ticketlab.experiments.transfer import TransferConfig, target_recipes
    # a matrix file's [sweep] table holds run options, as a --config file's does
    if ns.matrix:
        from ticketlab.experiments.transfer_matrix import run_options as matrix_options
        opts = run_options(ns, C.to_dict(matrix_options(ns.matrix)))
    else:
        opts = run_options(ns)
    api.set_threads(opts.threads)
    kw = dict(store=ns.store, data_dir=ns.data_dir)
    targets = {k[len(PREFIX):]: v for k, v in vars(ns).items() if k.startswith(PREFIX)}
    if ns.matrix:
        if ns.source or ns.config or targets:
            raise ConfigError("--matrix runs the pairs of its file: give no SOURCE, --config or --target-* flags")
        # the command owns its process: by default one worker per core
        # stacking only where this machine's calibration says it wins for every recipe of the matrix
        from ticketlab.experiments.transfer_matrix import load_matrix
        opts = calibrate.options(opts, load_matrix(ns.matrix).recipes.values())
        res = api.transfer(matrix=ns.matrix, options=opts.resolved("transfer", own_process=True), **kw)
        from ticketlab.experiments.transfer_matrix import summary
        rows = summary(res["transfers"])
        cols = ["source", "target", "level", "remaining_%", "n", "transfer_acc_%", "random_acc_%", "own_acc_%",
                "dense_acc_%", "gap_vs_random_pp", "gap_vs_own_pp"]
        print(_table([{k: (f"{v:.2f}" if isinstance(v, float) else v) for k, v in r.items()} for r in rows], cols))
        experiments = [t["experiment"] for t in res["transfers"]]
    else:
        source = ns.source
        if source is None:  # not given: the --config file's, else none
            del ns.source
        (cfg,) = _configs({"transfer": TransferConfig}, ns)
        if not cfg.source:
            raise ConfigError("transfer: give the source lottery experiment (SOURCE, or `source` in --config), "
                              "or a matrix file (--matrix FILE.toml)")
        changes = {}
        if source:
            changes["source"] = source
        if targets:
            changes["target"] = {**cfg.target, **targets}
        if changes:
            cfg = C.replace(cfg, **changes)
        opts = calibrate.options(opts, target_recipes(cfg, ns.store))  # as for the matrix
        res = api.transfer(cfg, options=opts.resolved("transfer", api.transfer_width(cfg), own_process=True), **kw)
        print(f"experiment: {res['experiment']}")
        print(f"source: {res['source']}   own ticket: {res['own'] or '-'}   random tickets: {res['random']}")
        print("test accuracy at the early-stopping iteration (mean ± std over replicates)")
        print(transfer_table(res["aggregate"]))
        experiments = [res["experiment"]]
    if ns.out:
        _plots(experiments, ns.out, ns.density)


def _plots(experiments, out, density) -> None:
    import csv
    from pathlib import Path
    from ticketlab.experiments.transfer import transfer_rows
    from ticketlab.reports.transfer_plots import plot_all
    files = plot_all(experiments, out, density=density)
    rows = [{"experiment": Path(e).name, **{k: v for k, v in r.items() if k != "path"}}
            for e in experiments for r in transfer_rows(e)]
    path = Path(out) / "runs.csv"
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]) if rows else ["experiment"])
        w.writeheader()
        w.writerows(rows)
    print("\n".join(str(p) for p in [*files, path] if str(p).endswith((".png", ".csv"))))


def cmd_transfer_plot(ns) -> None:
    from ticketlab.engine.store import Store
    check_out(ns.out, folder=True)
    _plots([Store(ns.store).get(e).path for e in ns.experiments], ns.out, ns.density)


def register(sub) -> None:
    """Add `ticketlab transfer` and `ticketlab transfer-plot`."""
    from ticketlab.experiments.transfer import TransferConfig
    p = sub.add_parser("transfer", help="train a lottery experiment's tickets on another dataset and/or optimizer "
                       "(Morcos et al. 2019), with random-ticket, own-ticket and dense controls",
                       formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("source", nargs="?", default=None,
                   help="the source lottery experiment (folder name, path or unique hash prefix)")
    p.add_argument("--matrix", default=None, metavar="FILE.toml",
                   help="run a transfer matrix file instead (see examples/transfer_matrix.toml)")
    p.add_argument("-o", "--out", default=None, help="also write plots and runs.csv into this folder")
    p.add_argument("--density", type=float, default=0.05,
                   help="heat map: the weights remaining (fraction) whose nearest level is compared")
    _run_flags(p, "transfer", ALL)
    C.add_flags(p.add_argument_group("transfer"), TransferConfig)
    _target_flags(p.add_argument_group("target recipe (default: the source's)"))
    p.set_defaults(fn=cmd_transfer)

    p = sub.add_parser("transfer-plot", help="plots of transfer experiments: accuracy per target, gap heat map")
    p.add_argument("experiments", nargs="+", help="transfer experiments (folder names, paths or unique hash prefixes)")
    p.add_argument("-o", "--out", default="plots", help="output folder")
    p.add_argument("--density", type=float, default=0.05,
                   help="heat map: the weights remaining (fraction) whose nearest level is compared")
    _common(p, data=False)
    p.set_defaults(fn=cmd_transfer_plot)
