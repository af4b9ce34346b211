"""Domains the lottery engine runs on, registered by task name (`ticketlab lottery --task NAME`).

IMP is the same procedure whatever is trained (Yu et al. 2019 apply LTH §2 unchanged to RL agents
and to language models). A `Domain` names a training recipe (a config dataclass of `param()` fields,
with `init_seed` and `data_seed` fields that the engine shifts per replicate) and how to make a
`ticketlab.domains.classify.Trainer` from it; the engine, runner, store and results need nothing else.

    classify    supervised classification (`TrainConfig`, `ClassifyTrainer`): LTH's setting
    rl          reinforcement learning agents (`ticketlab.domains.rl`)
    lm          language models (`ticketlab.domains.nlp`)
    translate   encoder-decoder translation (`ticketlab.domains.nlp`)

The built-in tasks are imported on first use, so that `ticketlab` does not import
stable-baselines3 or sentencepiece unless the task is asked for.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Callable

from ticketlab.core.errors import ConfigError, TicketlabError


@dataclass(frozen=True)
class Domain:
    """A domain the lottery engine can prune, registered under its task name.

    `make_trainer(cfg, *, data_dir, progress, checkpoint_every)` returns a Trainer for one
    replicate (`cfg` already carries the replicate's seeds). `metric` is the key of the headline
    metric in the rows `summary["final"]` and `summary["early_stop"]` that the Trainer's `fit`
    writes; `validate(cfg, data_dir)` raises a `TicketlabError` naming a bad config before a store
    folder is made.
    """

    name: str
    config: type
    make_trainer: Callable
    metric: str = "test_acc"
    higher_is_better: bool = True
    extra: str = ""  # the pip extra this task needs, named in the error when it is missing
    validate: Callable | None = None


Task = Domain  # the old name of the registry entry, kept for one release


_MODULES = {"classify": "ticketlab.domains.classify", "rl": "ticketlab.domains.rl.task",
            "lm": "ticketlab.domains.nlp.lm_task", "translate": "ticketlab.domains.nlp.translate_task"}
_EXTRAS = {"rl": "rl", "lm": "nlp", "translate": "nlp"}
_TASKS: dict[str, Domain] = {}


def register_task(task: Domain) -> Domain:
    """Make a task available by name (a task module calls this at import)."""
    _TASKS[task.name] = task
    return task


def task_names() -> list[str]:
    """The names of the built-in and registered tasks."""
    return sorted(set(_MODULES) | set(_TASKS))


def get_task(name: str) -> Domain:
    """The task called `name`, importing its module on first use."""
    if name not in _TASKS:
        if name not in _MODULES:
            raise ConfigError(f"task: got {name!r}, expected one of {', '.join(task_names())}")
        try:
            importlib.import_module(_MODULES[name])
        except ModuleNotFoundError as e:
            if e.name and e.name.startswith("ticketlab"):
                raise
            extra = _EXTRAS.get(name, name)
            raise TicketlabError(f"task {name!r} needs the {e.name!r} package: "
                                 f"pip install -c constraints.txt -e '.[{extra}]'") from None
        if name not in _TASKS:
            raise TicketlabError(f"module {_MODULES[name]} did not register task {name!r}")
    return _TASKS[name]


def task_of(cfg) -> str:
    """The name of the task whose config class `cfg` is an instance of (a task's config lives in
    the task module's package, which is imported to find it)."""
    get_task("classify")
    pkg = type(cfg).__module__.rsplit(".", 1)[0]
    for name, module in _MODULES.items():
        if name not in _TASKS and module.rsplit(".", 1)[0] == pkg:
            get_task(name)
    for name, t in _TASKS.items():
        if isinstance(cfg, t.config):
            return name
    raise ConfigError(f"no task takes a {type(cfg).__name__} config; tasks: {', '.join(task_names())}")


__all__ = ["Domain", "register_task", "get_task", "task_names", "task_of"]
