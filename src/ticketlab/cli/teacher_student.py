"""The `ticketlab teacher-student` command (a CLI plugin: `register(sub)`).

    ticketlab teacher-student --multi 5 --strength-decay 1 --seeds 4 --steps 20000
    ticketlab teacher-student --sweep multi=1,2,5,10 --sweep strength_decay=0,1,2 --out plots/
    ticketlab teacher-student --config ts.toml          # keys of TeacherStudentConfig; a [sweep] table of lists

`--sweep KEY=V1,V2,...` runs the cartesian product of the listed values (values of a list-valued
key such as teacher_widths are separated by '/': `--sweep teacher_widths=10,15/50,75`). Points that
share shapes and schedule train stacked as one computation; `--workers N` spreads the groups over
N processes (`ticketlab.engine.parallel`). Everything lands in the results store: finished runs are read,
interrupted ones resume from their last checkpoint.
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import sys
import typing

from ticketlab.core import config as C
from ticketlab.core.errors import ConfigError


def _field_kinds(cls) -> dict[str, object]:
    hints = typing.get_type_hints(cls)
    return {f.name: C._base_type(hints[f.name])[0] for f in dataclasses.fields(cls)}


def parse_sweep(items: list[str], cls, source: str = "--sweep") -> dict[str, list]:
    """`KEY=V1,V2` strings -> {key: [values]}; values of tuple keys are separated by '/'."""
    kinds = _field_kinds(cls)
    out: dict[str, list] = {}
    for item in items:
        if "=" not in item:
            raise ConfigError(f"{source}: got {item!r}, expected KEY=V1,V2,...")
        key, text = item.split("=", 1)
        key = key.strip().replace("-", "_")
        if key not in kinds:
            raise ConfigError(f"{source}: unknown key {key!r}; known keys: {', '.join(sorted(kinds))}")
        sep = "/" if kinds[key] is tuple else ","
        vals = [v.strip() for v in text.split(sep) if v.strip()]
        if not vals:
            raise ConfigError(f"{source}: key {key!r} has no values")
        out[key] = vals
    return out


def expand(base: dict, grid: dict[str, list], cls, source: str = "") -> list:
    """The configs of the cartesian product of `grid` over `base` (last key varying fastest)."""
    keys = list(grid)
    for k in keys:
        if k in base:
            raise ConfigError(f"key {k!r} is both set and swept{' in ' + source if source else ''}; keep one")
    cfgs = []
    for combo in itertools.product(*(grid[k] for k in keys)) if keys else [()]:
        cfgs.append(C.from_dict(cls, {**base, **dict(zip(keys, combo))}, source=source))
    return cfgs


def configs(ns: argparse.Namespace) -> list:
    """The sweep's configs: --config (a flat table plus an optional [sweep] table of lists), then
    flags (which override the file, sweep included), then --sweep (which overrides the file too)."""
    from ticketlab.experiments.teacher_student.experiment import TeacherStudentConfig as TSC
    values = C.load_toml(ns.config) if ns.config else {}
    grid = values.pop("sweep", {})
    if not isinstance(grid, dict) or any(not isinstance(v, list) or not v for v in grid.values()):
        raise ConfigError(f"[sweep] in {ns.config}: expected a table of non-empty lists")
    flags = C.flags_to_dict(TSC, ns)
    cli_grid = parse_sweep(ns.sweep or [], TSC)
    for k in cli_grid:
        if k in flags:
            raise ConfigError(f"--{k.replace('_', '-')} is both set and swept (--sweep {k}=...); keep one")
    for k, v in flags.items():
        values[k] = v
        grid.pop(k, None)
    for k, v in cli_grid.items():
        values.pop(k, None)
        grid[k] = v
    return expand(values, grid, TSC, ns.config or "")


def cmd_teacher_student(ns: argparse.Namespace) -> None:
    from ticketlab import api
    from ticketlab.reports.tables import text_table as _table
    from ticketlab.reports import teacher_student_tables as tables
    cfgs = configs(ns)
    api.set_threads(ns.threads)
    log = None if ns.quiet else (lambda s: print(s, file=sys.stderr, flush=True))
    res = api.teacher_student(cfgs, store=ns.store, workers=ns.workers, stack=ns.stack,
                              checkpoint_every=ns.checkpoint_every, out=ns.out, log=log, verbose=not ns.quiet)
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
    from ticketlab.cli.common import _run_flags
    from ticketlab.experiments.teacher_student.experiment import TeacherStudentConfig
    p = sub.add_parser("teacher-student", help="teacher–student specialization, luck and node tickets "
                       "(Tian et al. 2019)", formatter_class=argparse.ArgumentDefaultsHelpFormatter,
                       description="Train over-realized students on a fixed teacher and measure their "
                       "specialization, the luck of the winners, and node-pruned tickets (Tian et al. 2019, "
                       "'Luck Matters'; Tian 2019, 'Student Specialization'). --sweep KEY=V1,V2 runs grids.")
    _run_flags(p)
    p.set_defaults(checkpoint_every=5000)
    p.add_argument("--sweep", action="append", metavar="KEY=V1,V2",
                   help="sweep a config key over values (repeatable; tuple values separated by '/')")
    p.add_argument("--workers", type=int, default=1, help="worker processes, one torch thread each")
    p.add_argument("--stack", type=int, default=16, help="runs of one shape trained as one batched computation")
    p.add_argument("--out", default=None, help="write CSV tables and plots (PNG+SVG) to this folder")
    C.add_flags(p.add_argument_group("teacher-student"), TeacherStudentConfig)
    p.set_defaults(fn=cmd_teacher_student)
