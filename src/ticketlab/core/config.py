"""Typed configurations: frozen dataclasses whose fields are the hyper-parameters.

One dataclass per experiment kind (a training run, a lottery run, ...), a subclass of
`Config`. The same class gives:
- validation on construction, in Python as from the CLI or a TOML file: every field may
  carry `choices`, `min`, `max`; its annotation is checked where cheap (int, float, str,
  bool, tuple, dict, None only where the annotation allows it); NaN and ±inf are refused
  in every float field; then the class's cross-field `check()` runs. A bad value raises a
  `ConfigError` that names the key, the value and what was expected;
- the canonical JSON of every field, defaults included, and its hash, which names
  the experiment's folder in the results store (open_lth's scheme, but hashing JSON
  rather than `str()`, with a schema version);
- the CLI flags (`--kebab-case`, help text from the field's `help`);
- loading from TOML files, with unknown keys reported by name and file.

Identity versus run shape (open_lth): fields marked `hashed=False` (how many levels
to run, how many replicates) change how much of an experiment is run, not what it is.
A field added after experiments were stored is marked `hashed="unless_default"`: it joins
the identity only when set away from its default, so every stored experiment keeps its hash
(and its folder) while a changed value names a new experiment.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import math
import numbers
import tomllib
import types
import typing
from pathlib import Path
from typing import Any

from ticketlab.core.errors import ConfigError

SCHEMA_VERSION = 1


def param(default: Any, help: str, *, choices=None, min=None, max=None, hashed: bool | str = True,
          flag: bool = True, **extra):
    """A config field with its help text and valid range.

    `min`/`max` are inclusive bounds; `choices` a collection of allowed values (a tuple, or a
    registry dict whose keys are the names); `hashed=False` keeps the field out of the
    experiment's identity, `hashed="unless_default"` keeps it out while it holds its default; `flag=False` keeps it off the CLI; `extra` is further metadata
    read by the class that declares the field.
    """
    if hashed not in (True, False, "unless_default"):
        raise ValueError(f"hashed must be True, False or 'unless_default', not {hashed!r}")
    meta = dict(help=help, choices=choices, min=min, max=max, hashed=hashed, flag=flag, **extra)
    if isinstance(default, (list, dict, set)):
        raise TypeError("use a tuple or a default_factory for mutable defaults")
    return dataclasses.field(default=default, metadata=meta)


def _describe(meta: dict) -> str:
    if meta.get("choices"):
        named = [c for c in meta["choices"] if c is not None]
        return "one of " + ", ".join(map(str, named)) + (" (or leave it unset)" if None in meta["choices"] else "")
    lo, hi = meta.get("min"), meta.get("max")
    if lo is not None and hi is not None:
        return f"a value in [{lo}, {hi}]"
    if lo is not None:
        return f"a value >= {lo}"
    return f"a value <= {hi}"


_EXPECTED = {bool: "true or false", int: "an integer", float: "a number", str: "a string",
             tuple: "a list", dict: "a table / JSON object"}


def _is(kind, x) -> bool:
    """Whether `x` has the field kind `kind` (an int is a float; a bool is neither)."""
    if kind is bool:
        return isinstance(x, bool)
    if kind is int:
        return isinstance(x, numbers.Integral) and not isinstance(x, bool)
    if kind is float:
        return isinstance(x, numbers.Real) and not isinstance(x, bool)
    if kind is tuple:
        return isinstance(x, (tuple, list))
    return isinstance(x, kind)


_KINDS: dict[type, list] = {}


def _kinds(cls) -> list:
    """Per field of `cls`: (field, kind, element kind, None allowed); kind None = not checked."""
    if cls not in _KINDS:
        try:
            hints = typing.get_type_hints(cls)
        except (NameError, TypeError):  # an unresolvable annotation: check values only
            hints = {}
        out = []
        for f in dataclasses.fields(cls):
            tp = hints.get(f.name)
            kind, inner = _base_type(tp) if tp is not None else (None, None)
            origin = typing.get_origin(tp)
            optional = tp is None or (origin in (typing.Union, types.UnionType)
                                      and type(None) in typing.get_args(tp))
            known = (bool, int, float, str, tuple, dict)
            out.append((f, kind if kind in known else None, inner if inner in known else None, optional))
        _KINDS[cls] = out
    return _KINDS[cls]


def validate(cfg) -> None:
    """Check every field of `cfg`: its type (where cheap), `choices`, `min`/`max`, and that no
    float is NaN or infinite; raise a one-line ConfigError naming the key, the value and what
    was expected."""
    for f, kind, inner, optional in _kinds(type(cfg)):
        v = getattr(cfg, f.name)
        meta = f.metadata
        if v is None:
            if optional or kind is None:
                continue
            raise ConfigError(f"{f.name}: got None, expected {_EXPECTED[kind]}")
        if kind is not None and not _is(kind, v):
            raise ConfigError(f"{f.name}: got {v!r}, expected {_EXPECTED[kind]}")
        vals = v if isinstance(v, (tuple, list)) else (v,)
        for x in vals:
            if kind is tuple and inner is not None and not _is(inner, x):
                raise ConfigError(f"{f.name}: got {x!r} in {v!r}, expected {_EXPECTED[inner]} per entry")
            if meta.get("choices") and x not in meta["choices"]:
                raise ConfigError(f"{f.name}: got {x!r}, expected {_describe(meta)}")
            if isinstance(x, float) and not math.isfinite(x):
                raise ConfigError(f"{f.name}: got {x!r}, expected a finite number")
            if isinstance(x, (int, float)) and not isinstance(x, bool):
                if (meta.get("min") is not None and x < meta["min"]) or (
                        meta.get("max") is not None and x > meta["max"]):
                    raise ConfigError(f"{f.name}: got {x!r}, expected {_describe(meta)}")


class Config:
    """Base of the config dataclasses: a config is valid from the moment it exists.

    Construction (`Cls(...)`, `dataclasses.replace`, `from_dict`, the CLI) runs `validate` on
    every field, then the class's `check()` for rules between fields. A list given for a tuple
    field is stored as a tuple (the canonical JSON, hence the hash, is the same).

        @dataclass(frozen=True)
        class MyConfig(Config):
            lo: float = param(0.1, "lower bound", min=0.0)
            hi: float = param(0.9, "upper bound", max=1.0)

            def check(self):
                if self.lo > self.hi:
                    raise ConfigError(f"lo: got {self.lo}, expected <= hi ({self.hi})")
    """

    def __post_init__(self):
        for f, kind, _, _ in _kinds(type(self)):
            if kind is tuple and isinstance(getattr(self, f.name), list):
                object.__setattr__(self, f.name, tuple(getattr(self, f.name)))
        validate(self)
        self.check()

    def check(self) -> None:
        """Rules between fields (override); raise a ConfigError naming the field."""


def _base_type(tp):
    """(kind, inner) for a field annotation: kind in int/float/str/bool/tuple/dict."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        return _base_type(args[0])
    if origin is tuple:
        return tuple, typing.get_args(tp)[0]
    if origin is dict or tp is dict:
        return dict, None
    return tp, None


def _coerce(name: str, tp, value, source: str):
    """Convert a TOML/JSON/CLI value to the field's type, or raise ConfigError naming the key."""
    kind, inner = _base_type(tp)
    where = f" (in {source})" if source else ""
    if value is None:
        return None
    try:
        if kind is bool:
            if isinstance(value, str):
                if value.lower() in ("1", "true", "yes", "on"):
                    return True
                if value.lower() in ("0", "false", "no", "off"):
                    return False
                raise ValueError
            if not isinstance(value, bool):
                raise ValueError
            return value
        if kind is int:
            if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
                raise ValueError
            return value if isinstance(value, int) else int(value)  # an int subclass (a marked default) kept
        if kind is float:
            if isinstance(value, bool):
                raise ValueError
            return float(value)
        if kind is str:
            if not isinstance(value, str):
                raise ValueError
            return value
        if kind is tuple:
            if isinstance(value, str):
                value = [v for v in value.replace(",", " ").split() if v]
            if not isinstance(value, (list, tuple)):
                raise ValueError
            return tuple(_coerce(name, inner, v, source) for v in value)
        if kind is dict:
            if isinstance(value, str):
                value = json.loads(value)
            if not isinstance(value, dict):
                raise ValueError
            return dict(value)
    except (ValueError, TypeError, json.JSONDecodeError):
        pass
    else:
        return value
    expected = _EXPECTED.get(kind, str(kind))
    raise ConfigError(f"{name}: got {value!r}{where}, expected {expected}")


def from_dict(cls, values: dict, source: str = ""):
    """Build and validate a `cls` from a mapping; unknown keys raise ConfigError naming them."""
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - names)
    if unknown:
        where = f" in {source}" if source else ""
        raise ConfigError(f"unknown key {unknown[0]!r}{where}; known keys: {', '.join(sorted(names))}")
    kwargs = {k: _coerce(k, hints[k], v, source) for k, v in values.items()}
    cfg = cls(**kwargs)
    if not isinstance(cfg, Config):  # a Config validated itself on construction
        validate(cfg)
    return cfg


def replace(cfg, **changes):
    """`dataclasses.replace` with coercion and validation."""
    return from_dict(type(cfg), {**to_dict(cfg, all_fields=True), **changes})


def to_dict(cfg, *, all_fields: bool = True) -> dict:
    """Every field as plain JSON types (tuples become lists); with all_fields=False, only the
    identity: hashed fields, and `unless_default` ones that differ from their default."""
    out = {}
    for f in dataclasses.fields(cfg):
        hashed = f.metadata.get("hashed", True)
        if not all_fields and not hashed:
            continue
        v = getattr(cfg, f.name)
        if not all_fields and hashed == "unless_default" and v == _default(f):
            continue
        if dataclasses.is_dataclass(v):
            v = to_dict(v, all_fields=all_fields)
        out[f.name] = list(v) if isinstance(v, tuple) else v
    return out


def _default(f: dataclasses.Field):
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return dataclasses.MISSING


def canonical_json(kind: str, cfg, extra: dict | None = None) -> str:
    """The experiment's identity: kind, schema version and every hashed field, as sorted JSON;
    `extra`, run settings that change results without being config fields (the precision when not
    fp32), joins it only when not empty, so that every key without them stays what it was."""
    body = {"kind": kind, "schema": SCHEMA_VERSION, "config": to_dict(cfg, all_fields=False), **(extra or {})}
    return json.dumps(body, sort_keys=True, separators=(",", ":"))


def config_hash(kind: str, cfg, extra: dict | None = None) -> str:
    """First 12 hex digits of the sha256 of `canonical_json`."""
    return hashlib.sha256(canonical_json(kind, cfg, extra).encode()).hexdigest()[:12]


def load_toml(path: str | Path) -> dict:
    """Read a TOML config file; syntax errors and missing files raise ConfigError naming the file."""
    path = Path(path)
    try:
        with open(path, "rb") as f:
            return tomllib.load(f)
    except FileNotFoundError:
        raise ConfigError(f"config file not found: {path}") from None
    except IsADirectoryError:
        raise ConfigError(f"{path}: a folder, expected a TOML config file") from None
    except OSError as e:
        raise ConfigError(f"{path}: cannot read the config file ({e.strerror or e})") from None
    except UnicodeDecodeError as e:
        raise ConfigError(f"{path}: not UTF-8 text (byte {e.start}); a TOML config file is UTF-8") from None
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{path}: invalid TOML: {e}") from None


def add_flags(parser, cls, names=None, *, hidden: bool = False) -> None:
    """Add a `--kebab-case` flag per field of `cls` (or per field in `names`); unset flags stay absent
    from the namespace. `hidden` flags are accepted but left out of `--help`."""
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        if not f.metadata.get("flag", True) or (names is not None and f.name not in names):
            continue
        kind, _ = _base_type(hints[f.name])
        help_ = argparse.SUPPRESS if hidden else _flag_help(f)
        flag = "--" + f.name.replace("_", "-")
        if kind is bool:
            parser.add_argument(flag, dest=f.name, default=argparse.SUPPRESS,
                                action=argparse.BooleanOptionalAction, help=help_)
        else:
            parser.add_argument(flag, dest=f.name, default=argparse.SUPPRESS, metavar="V", help=help_)


def _flag_help(f: dataclasses.Field) -> str:
    """A field's `--help` line: its help, its choices, and its default once (a None default is
    left unsaid: the help says what None means)."""
    text = f.metadata.get("help", "")
    choices = [str(c) for c in (f.metadata.get("choices") or ()) if c is not None]
    if choices and not all(c in text for c in choices):
        text += f"; one of: {', '.join(choices)}"
    if f.default is not dataclasses.MISSING:
        default = f.default
    elif f.default_factory is not dataclasses.MISSING:
        default = f.default_factory()
    else:
        return text
    return text if default is None else f"{text} (default: {default!r})"


def field_names(cls) -> list[str]:
    """The field names of a config class."""
    return [f.name for f in dataclasses.fields(cls)]


def flags_to_dict(cls, ns: argparse.Namespace) -> dict:
    """The fields of `cls` that were given on the command line."""
    names = {f.name for f in dataclasses.fields(cls)}
    return {k: v for k, v in vars(ns).items() if k in names}
