"""Flags and config loading shared by every command: the store and data folders, run options,
and configs from flags and/or a TOML file (flags override the file).

The run flags (`--workers`, `--stack`, `--threads`, `--quiet`, `--checkpoint-every`, `--device`)
are generated here, in one place, from the fields of `ticketlab.engine.options.RunOptions`, with the
defaults of the command's experiment kind; a `--config` file's `[sweep]` table gives the same run
options (the flags override it).
"""

from __future__ import annotations

import argparse
import dataclasses

from ticketlab.core import config as C
from ticketlab.engine.options import KIND_DEFAULTS, RunOptions

# RunOptions field -> (flag, metavar); `progress` is the `--quiet` switch
FLAGS = {"workers": ("--workers", "N"), "stack": ("--stack", "N"), "threads": ("--threads", "N"),
         "progress": ("--quiet", None), "checkpoint_every": ("--checkpoint-every", "N"), "device": ("--device", "NAME"),
         "precision": ("--precision", "NAME"), "deterministic": ("--deterministic", None)}
# the flags every command that trains takes, whatever other run flags it has
DEVICE_FLAGS = ("device", "precision", "deterministic")
ALL = tuple(FLAGS)
GIVEN = ("workers", "stack", "threads", "checkpoint_every") + DEVICE_FLAGS  # the flags that take a value


class Help(argparse.HelpFormatter):
    """`--help` with each option's default said once: appended as "(default: X)" unless the help
    already names its default, or there is none to name (None, False, a flag absent when unset)."""

    def _get_help_string(self, action):
        text = action.help or ""
        d = action.default
        if ("default" in text or d is None or d is False or d == argparse.SUPPRESS or not action.option_strings
                or action.required):
            return text
        return f"{text} (default: {d})"


class Parser(argparse.ArgumentParser):
    """argparse's parser, whose errors are one line, as every other bad input's (argparse prints its
    usage block first): the command, the problem, and where the full usage is."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see `{self.prog} --help`)\n")


def use_help(p: argparse.ArgumentParser) -> None:
    """Give `p` and every subcommand under it the `Help` formatter (one place for every command,
    plugins included)."""
    p.formatter_class = Help
    for a in p._actions:
        if isinstance(a, argparse._SubParsersAction):
            for q in a.choices.values():
                use_help(q)


def _common(p: argparse.ArgumentParser, *, data: bool = True) -> None:
    p.add_argument("--store", default=None, help="results store folder (default: $TICKETLAB_STORE or ./ticketlab-results)")
    if data:
        p.add_argument("--data-dir", default=None, help="data folder (default: $TICKETLAB_DATA or ~/.cache/ticketlab)")


def _run_flags(p: argparse.ArgumentParser, kind: str = "train",
               fields: tuple[str, ...] = ("threads", "progress", "checkpoint_every") + DEVICE_FLAGS) -> None:
    """The store and data folders, --config, and the run flags of `fields` for a command of `kind`."""
    _common(p)
    p.add_argument("--config", default=None, metavar="FILE.toml",
                   help="read the config from a TOML file ([sweep]: run options); flags override it")
    run_flags(p, kind, fields)


def run_flags(p, kind: str | None, fields: tuple[str, ...] = ALL) -> None:
    """Add the flags of the RunOptions `fields`, with `kind`'s defaults in their help (None: a
    sweep, whose trials take their own kind's). Unset flags stay absent from the namespace."""
    meta = {f.name: f.metadata for f in dataclasses.fields(RunOptions)}
    for name in fields:
        flag, metavar = FLAGS[name]
        if name == "progress":
            p.add_argument(flag, dest="quiet", action="store_true", help="no progress bar; print only the result")
            continue
        if name == "deterministic":
            p.add_argument(flag, dest=name, action="store_true", default=argparse.SUPPRESS, help=meta[name]["help"])
            continue
        # choices are checked by RunOptions, so that a bad value is one line naming the field
        kw = {} if meta[name]["choices"] or name in ("device", "precision") else dict(type=int)
        what = "trials at once, one process each" if kind is None and name == "workers" else meta[name]["help"]
        if meta[name]["choices"]:
            what += f": {', '.join(meta[name]['choices'])}"
        p.add_argument(flag, dest=name, default=argparse.SUPPRESS, metavar=metavar,
                       help=f"{what} (default: {_default(name, kind)})", **kw)


def _default(name: str, kind: str | None) -> str:
    if name == "workers":
        if kind is None:  # a sweep: its workers run trials
            return "one per core, at most one per trial; ray: the cluster's CPUs"
        return "one per core, capped at the runs that can train at once"
    if name in ("stack", "checkpoint_every"):
        return str(KIND_DEFAULTS[kind][name]) if kind else "each trial kind's"
    if name == "threads":
        return "1"
    return str(getattr(RunOptions(), name))


def run_options(ns: argparse.Namespace, file_table: dict | None = None) -> RunOptions:
    """The RunOptions of a command: the `--config` file's [sweep] table (or `file_table`), then
    the run flags given. Bad values raise a ConfigError naming the flag's field."""
    table = file_table if file_table is not None else _sweep_table(ns)
    opts = RunOptions.from_table(table, source=f"[sweep] of {ns.config}") if table else RunOptions()
    given = {f: getattr(ns, f) for f in GIVEN if hasattr(ns, f)}
    if getattr(ns, "quiet", False):
        given["progress"] = False
    return C.from_dict(RunOptions, {**C.to_dict(opts), **given}, source="the command line")


def _sweep_table(ns: argparse.Namespace) -> dict:
    if not getattr(ns, "config", None):
        return {}
    table = C.load_toml(ns.config).get("sweep", {})
    if not isinstance(table, dict):
        raise C.ConfigError(f"sweep: got {table!r} in {ns.config}, expected a table [sweep] of run options")
    return table


def _config(cls, ns: argparse.Namespace, section: str | None = None):
    values = {}
    if ns.config:
        values = C.load_toml(ns.config)
        values.pop("sweep", None)  # run options: see run_options
        if section and section in values and isinstance(values[section], dict):
            values = values[section]
    values.update(C.flags_to_dict(cls, ns))
    return C.from_dict(cls, values, source=ns.config or "")


def _configs(classes: dict, ns: argparse.Namespace, *, grid: bool = False) -> list:
    """Build several configs from one flat namespace of flags and/or a TOML file.

    In the file, keys may be flat or grouped in tables named after each config
    (`[train]`, `[lottery]`); every key must belong to exactly one config. `grid`: the command reads
    the file's [grid] table itself (`sparse-train`'s points), so it is not a key here.
    """
    values = C.load_toml(ns.config) if ns.config else {}
    values.pop("sweep", None)  # run options: see run_options
    if grid:
        values.pop("grid", None)
    flat = {k: v for k, v in values.items() if not (k in classes and isinstance(v, dict))}
    for section in classes:
        if isinstance(values.get(section), dict):
            flat.update(values[section])
    owners = {f: name for name, cls in classes.items() for f in C.field_names(cls)}
    per = {name: {} for name in classes}
    for k, v in flat.items():
        if k not in owners:
            raise C.ConfigError(f"unknown key {k!r} in {ns.config}; see `ticketlab {ns.command} --help`")
        per[owners[k]][k] = v
    for name, cls in classes.items():
        per[name].update(C.flags_to_dict(cls, ns))
    return [C.from_dict(cls, per[name], source=ns.config or "") for name, cls in classes.items()]
