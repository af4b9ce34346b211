"""Flags and config loading shared by every command: the store and data folders, run options,
and configs from flags and/or a TOML file (flags override the file).
"""

from __future__ import annotations

import argparse

from ticketlab.core import config as C


def _common(p: argparse.ArgumentParser, *, data: bool = True) -> None:
    p.add_argument("--store", default=None, help="results store folder (default: $TICKETLAB_STORE or ./ticketlab-results)")
    if data:
        p.add_argument("--data-dir", default=None, help="data folder (default: $TICKETLAB_DATA or ~/.cache/ticketlab)")


def _run_flags(p: argparse.ArgumentParser) -> None:
    _common(p)
    p.add_argument("--config", default=None, metavar="FILE.toml", help="read the config from a TOML file; flags override it")
    p.add_argument("--quiet", action="store_true", help="no progress bar; print only the result")
    p.add_argument("--threads", type=int, default=None, help="torch threads in this process (default 1)")
    p.add_argument("--checkpoint-every", type=int, default=1000, metavar="N",
                   help="write a resumable checkpoint every N iterations")


def _config(cls, ns: argparse.Namespace, section: str | None = None):
    values = {}
    if ns.config:
        values = C.load_toml(ns.config)
        if section and section in values and isinstance(values[section], dict):
            values = values[section]
    values.update(C.flags_to_dict(cls, ns))
    return C.from_dict(cls, values, source=ns.config or "")


def _configs(classes: dict, ns: argparse.Namespace) -> list:
    """Build several configs from one flat namespace of flags and/or a TOML file.

    In the file, keys may be flat or grouped in tables named after each config
    (`[train]`, `[lottery]`); every key must belong to exactly one config.
    """
    values = C.load_toml(ns.config) if ns.config else {}
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
