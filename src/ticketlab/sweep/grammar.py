"""The sweep grammar: one file format for a grid of experiments of any kind, and the `KEY=V1,V2`
command-line front that builds the same trials.

A sweep file (TOML; examples/sweep.toml, examples/sweep_teacher_student.toml):

    kind = "lottery"        # train | lottery | sparse | transfer | teacher_student (ticketlab.sweep.kinds)
    task = "rl"             # lottery only: classify (default), rl, lm, translate (ticketlab.engine.tasks);
                            #   the task's config class takes TrainConfig's place
    [base]                  # the fixed config: keys of the kind's config classes, flat or in
    env = "CartPole-v1"     #   [base.<section>] tables (the sections: ticketlab.sweep.kinds)
    levels = 3
    [grid]                  # one non-empty list per varied key, flat or in [grid.<section>]; the
    init_seed = [0, 1, 2]   #   trials are the cartesian product, the last key varying fastest. A
    prune_fraction = [0.2, 0.5]  # list-valued key takes a list of lists, a table-valued key a list of tables
    [sweep]                 # run options: the fields of ticketlab.engine.options.RunOptions (workers,
    workers = 2             #   stack, threads, progress, checkpoint_every, device) and the sweep's
    retries = 1             #   own: retries, backend (inline | process | ray), address, replicates (sparse)

`[sweep]` always holds run options and `[grid]` the grid. Files written for `ticketlab
teacher-student --config` before, whose `[sweep]` table was the grid, still load: a `[sweep]` table
of config keys with list values is taken as the grid, with a one-line deprecation warning.

`ticketlab teacher-student --sweep KEY=V1,V2` is a front for the same grammar (`flag_grid`,
`override`): its flags and `--config` file make the same `Sweep`, expanded into the same trials.

Unknown keys anywhere, a grid value that is not a non-empty list, a key given in both [base] and
[grid], and two trials with identical configs are ConfigErrors naming the key and the file.
"""

from __future__ import annotations

import dataclasses
import difflib
import itertools
import json
import logging
import typing
from dataclasses import dataclass
from pathlib import Path

from ticketlab.core import config as C
from ticketlab.core.errors import ConfigError
from ticketlab.engine.options import RunOptions, fields as run_option_fields
from ticketlab.engine.parallel import BACKENDS
from ticketlab.sweep.kinds import KINDS, sections

log = logging.getLogger(__name__)

TOP = ("kind", "task", "base", "grid", "sweep")
# the [sweep] keys that are the sweep's own (the others are RunOptions fields): type, minimum
OWN = {"retries": (int, 0), "backend": (str, None), "address": (str, None), "replicates": (int, 1)}


@dataclass(frozen=True)
class Trial:
    """One point of a sweep: the configs it runs and the grid values that made it."""

    index: int
    kind: str                 # a key of ticketlab.sweep.kinds.KINDS
    configs: tuple            # one config per section of the kind, e.g. (TrainConfig, LotteryConfig)
    overrides: dict           # grid key -> value (as written in the file)

    @property
    def label(self) -> str:
        return label(self.overrides)


@dataclass(frozen=True)
class Sweep:
    """A parsed sweep, before expansion: what a file (or the flags of a front) says."""

    kind: str
    classes: dict             # section -> config class, in trial order
    base: dict                # key -> value (every key owned by one section)
    grid: dict                # key -> non-empty list of values, in file order
    options: dict             # the [sweep] table: run options and the sweep's own keys, as given
    source: str               # the file (or flags) it came from, for errors


# ---- reading -------------------------------------------------------------------------------

def load_sweep(path: str | Path) -> tuple[list[Trial], dict]:
    """Read a sweep file: (trials of the expanded grid, options of its [sweep] table as given)."""
    sweep = read(C.load_toml(path), Path(path))
    return expand(sweep), sweep.options


def read(doc: dict, path: Path | str) -> Sweep:
    """Check a sweep file's tables and sort its keys into the kind's config sections."""
    unknown = sorted(set(doc) - set(TOP))
    if unknown:
        raise ConfigError(f"unknown key {unknown[0]!r} in {path}; a sweep file has kind, task, [base], [grid], "
                          f"[sweep]")
    kind = doc.get("kind")
    if kind is None:
        raise ConfigError(f"missing key 'kind' in {path}: {' or '.join(repr(k) for k in KINDS)}")
    if kind not in KINDS:
        raise ConfigError(f"kind: got {kind!r} in {path}, expected one of {', '.join(KINDS)}")
    task = doc.get("task", "classify")
    if "task" in doc and kind != "lottery":
        raise ConfigError(f"task in {path} applies to kind = \"lottery\" only (this sweep is {kind!r})")
    if not isinstance(task, str):
        raise ConfigError(f"task: got {task!r} in {path}, expected a task name")
    for table in ("base", "grid", "sweep"):
        if not isinstance(doc.get(table, {}), dict):
            raise ConfigError(f"{table}: got {doc[table]!r} in {path}, expected a table [{table}]")
    classes = sections(kind, task)
    grid_table, options = dict(doc.get("grid", {})), dict(doc.get("sweep", {}))
    old = _old_grid(options, classes, path)
    if old:
        if grid_table:
            raise ConfigError(f"{path} has both [grid] and a [sweep] table of config keys; the grid goes in "
                              f"[grid], run options in [sweep]")
        log.warning("%s: [sweep] holds the grid (the old teacher-student format); rename it [grid] "
                    "([sweep] holds run options now)", path)
        grid_table, options = options, {}
    base = _split(doc.get("base", {}), classes, "base", path)
    grid = _split(grid_table, classes, "grid", path)
    for k, v in grid.items():
        if not isinstance(v, list) or not v:
            raise ConfigError(f"grid key {k!r} in {path}: got {v!r}, expected a non-empty list of values")
        if k in base:
            raise ConfigError(f"key {k!r} is in both [base] and [grid] of {path}; keep one")
    return Sweep(kind, classes, base, grid, check_options(options, kind, path), str(path))


def _old_grid(table: dict, classes: dict, path) -> bool:
    """Whether a [sweep] table is the old teacher-student grid: config keys with list values only."""
    keys = set(table) - set(OWN) - set(run_option_fields())
    if not keys:
        return False
    owned = {f for cls in classes.values() for f in C.field_names(cls)}
    config_keys = keys & owned
    if config_keys == set(table) and all(isinstance(v, list) for v in table.values()):
        return True
    if config_keys:
        k = sorted(config_keys)[0]
        raise ConfigError(f"key {k!r} in [sweep] of {path} is a config key: varied keys go in [grid], "
                          f"fixed ones in [base]; [sweep] holds run options")
    return False


def _split(values: dict, classes: dict, table: str, path) -> dict:
    """The keys of [table] (flat, or in [table.<section>] sub-tables) in file order, each checked
    to belong to one of the kind's config classes."""
    owners = {f: name for name, cls in classes.items() for f in C.field_names(cls)}
    out = {}

    def put(k, v):
        if k in out:
            raise ConfigError(f"key {k!r} is given twice in [{table}] of {path}")
        out[k] = v

    for k, v in values.items():
        if k in classes and isinstance(v, dict):
            for kk, vv in v.items():
                if kk not in C.field_names(classes[k]):
                    raise ConfigError(f"unknown key {kk!r} in [{table}.{k}] of {path}"
                                      f"{_hint(kk, C.field_names(classes[k]))}")
                put(kk, vv)
        elif k in owners:
            put(k, v)
        else:
            raise ConfigError(f"unknown key {k!r} in [{table}] of {path}{_hint(k, owners)}")
    return out


def _hint(key: str, known) -> str:
    close = difflib.get_close_matches(key, list(known), n=1)
    return f"; did you mean {close[0]!r}?" if close else ""


def check_options(values: dict, kind: str, path) -> dict:
    """The [sweep] table, checked: RunOptions fields and the sweep's own keys (OWN)."""
    known = [*run_option_fields(), *OWN]
    out = {}
    for k, v in values.items():
        if k not in known:
            raise ConfigError(f"unknown key {k!r} in [sweep] of {path}; known keys: {', '.join(known)}")
        if k in OWN:
            tp, lo = OWN[k]
            if tp is int and (isinstance(v, bool) or not isinstance(v, int) or v < lo):
                raise ConfigError(f"{k}: got {v!r} in [sweep] of {path}, expected an integer >= {lo}")
            if tp is str and not isinstance(v, str):
                raise ConfigError(f"{k}: got {v!r} in [sweep] of {path}, expected a string")
        out[k] = v
    run = {k: v for k, v in out.items() if k not in OWN}
    try:
        opts = RunOptions.from_table(run, source=f"[sweep] of {path}")
    except ConfigError as e:
        raise ConfigError(f"{e}" if str(path) in str(e) else f"{e} (in [sweep] of {path})") from None
    out.update({k: getattr(opts, k) for k in run})
    if out.get("backend", "process") not in BACKENDS:
        raise ConfigError(f"backend: got {out['backend']!r} in [sweep] of {path}, "
                          f"expected one of {', '.join(BACKENDS)}")
    if "replicates" in out and kind != "sparse":
        hint = {"train": "vary init_seed in [grid]", "teacher_student": "set seeds in [base] or [grid]"}.get(
            kind, "set it in [base] or [grid]")
        raise ConfigError(f"replicates in [sweep] of {path} applies to kind = \"sparse\" only; "
                          f"for a {kind} sweep, {hint}")
    return out


# ---- the command-line front ----------------------------------------------------------------

def flag_grid(items: list[str], classes: dict, source: str = "--sweep") -> dict[str, list]:
    """`KEY=V1,V2` strings -> {key: [values]}; the values of a list-valued key are separated by '/'
    (`teacher_widths=10,15/50,75`). Values stay strings: the config classes coerce them."""
    kinds = {}
    for cls in classes.values():
        kinds.update({f: C._base_type(t)[0] for f, t in typing.get_type_hints(cls).items()})
    out: dict[str, list] = {}
    for item in items:
        if "=" not in item:
            raise ConfigError(f"{source}: got {item!r}, expected KEY=V1,V2,...")
        key, text = item.split("=", 1)
        key = key.strip().replace("-", "_")
        if key not in kinds:
            raise ConfigError(f"{source}: unknown key {key!r}; known keys: {', '.join(sorted(kinds))}")
        if key in out:  # a second --sweep of one key would silently replace the first
            raise ConfigError(f"{source}: key {key!r} is swept twice; give its values in one {key}=V1,V2,...")
        sep = "/" if kinds[key] is tuple else ","
        vals = [v.strip() for v in text.split(sep)]
        if not any(vals):
            raise ConfigError(f"{source}: key {key!r} has no values")
        if not all(vals):
            raise ConfigError(f"{source}: got {item!r}, an empty value between separators ({sep!r})")
        out[key] = vals
    return out


def override(sweep: Sweep, flags: dict, grid: dict[str, list]) -> Sweep:
    """A sweep with command-line flags applied: `flags` (key -> value) fix keys, taking them out of
    the grid; `grid` (from `flag_grid`) varies keys, taking them out of the base (a key already in
    the grid keeps its place). A key both fixed and varied on the command line is an error."""
    for k in grid:
        if k in flags:
            raise ConfigError(f"--{k.replace('_', '-')} is both set and swept (--sweep {k}=...); keep one")
    base, new_grid = dict(sweep.base), dict(sweep.grid)
    for k, v in flags.items():
        base[k] = v
        new_grid.pop(k, None)
    for k, v in grid.items():
        base.pop(k, None)
        new_grid[k] = v
    return dataclasses.replace(sweep, base=base, grid=new_grid)


# ---- expansion -----------------------------------------------------------------------------

def expand(sweep: Sweep) -> list[Trial]:
    """The trials of the cartesian product of the grid over the base, the last key varying fastest;
    each config checked (errors name the trial), identical trials refused."""
    owners = {f: name for name, cls in sweep.classes.items() for f in C.field_names(cls)}
    keys = list(sweep.grid)
    for k in keys:
        if k in sweep.base:
            raise ConfigError(f"key {k!r} is both set and swept in {sweep.source}; keep one")
    trials, seen = [], {}
    for i, combo in enumerate(itertools.product(*(sweep.grid[k] for k in keys))):
        overrides = dict(zip(keys, combo))
        values = {name: {} for name in sweep.classes}
        for k, v in {**sweep.base, **overrides}.items():
            values[owners[k]][k] = v
        try:
            configs = tuple(C.from_dict(cls, values[name], source=sweep.source)
                            for name, cls in sweep.classes.items())
        except ConfigError as e:
            where = "" if sweep.source in str(e) else f"in {sweep.source}, "
            raise ConfigError(f"{e} ({where}trial {i}: {label(overrides)})") from None
        trial = Trial(i, sweep.kind, configs, overrides)
        key = json.dumps([C.to_dict(c) for c in configs], sort_keys=True)
        if key in seen:
            raise ConfigError(f"{sweep.source}: trials {seen[key]} and {i} have the same config "
                              f"({trial.label}); remove the duplicate grid value")
        seen[key] = i
        trials.append(trial)
    return trials


def label(overrides: dict) -> str:
    """A trial's grid values as one short line: `init_seed=0, model=mlp` ("base" for none)."""
    return ", ".join(f"{k}={short(v)}" for k, v in overrides.items()) or "base"


def short(v) -> str:
    """A value as a trial's label shows it: lists and tables as compact JSON, the rest with `str`."""
    return json.dumps(v, separators=(",", ":")) if isinstance(v, (dict, list)) else str(v)


__all__ = ["Trial", "Sweep", "load_sweep", "read", "check_options", "flag_grid", "override", "expand", "label"]
