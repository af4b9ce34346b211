"""The `ticketlab teacher-student` command (a CLI plugin: `register(sub)`).

    ticketlab teacher-student --multi 5 --strength-decay 1 --seeds 4 --steps 20000
    ticketlab teacher-student --sweep multi=1,2,5,10 --sweep strength_decay=0,1,2 --out plots/
    ticketlab teacher-student --config ts.toml     # keys of TeacherStudentConfig; [grid] of lists; [sweep] run options

The command is a front for the sweep grammar (`ticketlab.sweep.grammar`): `--sweep KEY=V1,V2,...`
varies a key over the listed values (values of a list-valued key such as teacher_widths are
separated by '/': `--sweep teacher_widths=10,15/50,75`), and the trials are the cartesian product,
the same trials that `ticketlab sweep` makes of a `kind = "teacher_student"` file with that [grid]. A
`--config` file has the config keys at its top level (or in [base]), the grid in [grid] and the run
options in [sweep]; an older file whose [sweep] table holds the grid still works (with a warning).
Points that share shapes and schedule train stacked as one computation; `--workers N` spreads the
groups over N processes (`ticketlab.engine.parallel`). Everything lands in the results store:
finished runs are read, interrupted ones resume from their last checkpoint.
"""

from __future__ import annotations

import argparse

from ticketlab.core import config as C
from ticketlab.core.errors import ConfigError
from ticketlab.sweep import grammar

KIND = "teacher_student"


def parse_sweep(items: list[str], cls, source: str = "--sweep") -> dict[str, list]:
    """`KEY=V1,V2` strings -> {key: [values]}; values of tuple keys are separated by '/'."""
    return grammar.flag_grid(items, {KIND: cls}, source)


def sweep_of(ns: argparse.Namespace) -> grammar.Sweep:
    """The command's sweep: the --config file (config keys flat or in [base], [grid], [sweep]), then
    the flags, which fix keys (taking them out of the grid), then --sweep, which varies keys."""
    from ticketlab.experiments.teacher_student.experiment import TeacherStudentConfig as TSC
    doc = C.load_toml(ns.config) if ns.config else {}
    if "kind" in doc and doc["kind"] != KIND:
        raise ConfigError(f"kind: got {doc['kind']!r} in {ns.config}, expected {KIND!r} (or no kind)")
    tables = {k: doc[k] for k in ("base", "grid", "sweep") if k in doc}
    flat = {k: v for k, v in doc.items() if k not in (*grammar.TOP,)}
    base = tables.get("base", {})
    if flat and isinstance(base, dict):
        base = {**flat, **base}
    sweep = grammar.read({**tables, "kind": KIND, "base": base}, ns.config or "the command line")
    return grammar.override(sweep, C.flags_to_dict(TSC, ns), parse_sweep(ns.sweep or [], TSC))


def configs(ns: argparse.Namespace) -> list:
    """The sweep's configs, one per trial (see `sweep_of`)."""
    return [t.configs[0] for t in grammar.expand(sweep_of(ns))]


def cmd_teacher_student(ns: argparse.Namespace) -> None:
    from ticketlab import api
    from ticketlab.reports.tables import text_table as _table
    from ticketlab.reports import teacher_student_tables as tables
    from ticketlab.cli.common import run_options
    sweep = sweep_of(ns)
    cfgs = [t.configs[0] for t in grammar.expand(sweep)]
    own = sorted(set(sweep.options) & set(grammar.OWN))
    if own:
        raise ConfigError(f"{own[0]} in [sweep] of {ns.config} applies to `ticketlab sweep` only")
    # the command owns its process: by default one worker per core (its loop caps them at the groups)
    opts = run_options(ns, sweep.options).resolved(KIND, own_process=True)
    api.set_threads(opts.threads)
    res = api.teacher_student(cfgs, store=ns.store, out=ns.out, options=opts)
    rows = tables.short_points(res["rows"])
    print(f"success = fraction of teacher nodes with a student node of correlation >= {cfgs[0].threshold:g} "
          f"(mean over seeds; per hidden layer, bottom first)")
    print(_table(rows, list(rows[0])))
    pr = tables.prune(res["rows"])
    if pr:
        print("\nnode pruning (means over seeds): specialized nodes kept, teacher-fit error (eval MSE / teacher "
              "output variance) full, pruned, and retrained ticket vs reinit")
        print(_table(pr, list(pr[0])))
    if res["files"]:
        print(f"\nwrote {len(res['files'])} files to {ns.out}")


def register(sub) -> None:
    """Add the `teacher-student` subcommand to the `ticketlab` parser."""
    from ticketlab.cli.common import ALL, _run_flags
    from ticketlab.experiments.teacher_student.experiment import TeacherStudentConfig
    p = sub.add_parser("teacher-student", help="teacher–student specialization, luck and node tickets "
                       "(Tian et al. 2019)", formatter_class=argparse.ArgumentDefaultsHelpFormatter,
                       description="Train over-realized students on a fixed teacher and measure their "
                       "specialization, the luck of the winners, and node-pruned tickets (Tian et al. 2019, "
                       "'Luck Matters'; Tian 2019, 'Student Specialization'). --sweep KEY=V1,V2 runs grids.")
    _run_flags(p, KIND, ALL)
    p.add_argument("--sweep", action="append", metavar="KEY=V1,V2",
                   help="sweep a config key over values (repeatable; tuple values separated by '/')")
    p.add_argument("--out", default=None, help="write CSV tables and plots (PNG+SVG) to this folder")
    C.add_flags(p.add_argument_group("teacher-student"), TeacherStudentConfig)
    p.set_defaults(fn=cmd_teacher_student)
