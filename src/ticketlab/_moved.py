"""Old import paths, kept for one release after the package was split into floors.

`import ticketlab.lottery` (or `ticketlab.train`, `ticketlab.sparse.rigl`, ...) still works: a
meta-path finder maps each old dotted name to the module's new home and returns *that same
module object*, so classes, monkeypatches and isinstance checks are shared between the two names.
New code imports the new paths; the README's Architecture section lists them. Nothing inside
the package imports an old path (the layer test enforces this).
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import sys

# old dotted name (under ticketlab.) -> new dotted name; packages map their submodules too
MOVED = {
    "errors": "core.errors", "_atomic": "core.atomic", "masks": "core.masks", "scores": "core.scores",
    "pruning": "core.pruning", "distributions": "core.distributions", "schedules": "core.schedules",
    "config": "core.config", "saliency": "methods.saliency", "sparse": "methods.sparse",
    "optim": "training.optim", "train": "training.loop", "ensemble": "training.stacked",
    "export": "engine.export", "store": "engine.store", "results": "engine.results",
    "parallel": "engine.parallel", "tasks": "engine.tasks",
    "trainers": "domains.classify", "trainers.classify": "domains.classify",
    "rl": "domains.rl", "nlp": "domains.nlp",
    "lottery": "experiments.lottery.trunk", "controls": "experiments.lottery.controls",
    "runner": "experiments.lottery.runner", "instability": "experiments.lottery.instability",
    "sparse_train": "experiments.sparse_training", "transfer": "experiments.transfer",
    "transfer_matrix": "experiments.transfer_matrix",
    "teacher_student": "experiments.teacher_student",
    "teacher_student.plots": "reports.teacher_student_plots",
    "teacher_student.tables": "reports.teacher_student_tables",
    "teacher_student.cli": "cli.teacher_student",
    "plots": "reports.plots", "sparse_plots": "reports.sparse_plots", "transfer_plots": "reports.transfer_plots",
    "report": "reports.html", "transfer_cli": "cli.transfer",
}


def new_name(name: str) -> str | None:
    """The new dotted name of an old `ticketlab.*` module name, or None if it did not move."""
    if not name.startswith("ticketlab."):
        return None
    parts = name[len("ticketlab."):].split(".")
    for i in range(len(parts), 0, -1):
        old = ".".join(parts[:i])
        if old in MOVED:
            return "ticketlab." + ".".join([MOVED[old], *parts[i:]])
    return None


class _Finder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    def find_spec(self, name, path=None, target=None):
        return importlib.machinery.ModuleSpec(name, self) if new_name(name) else None

    def create_module(self, spec):
        return None  # a placeholder; exec_module swaps in the real module

    def exec_module(self, module):
        # the import system returns whatever sys.modules holds under the name after exec_module
        sys.modules[module.__name__] = importlib.import_module(new_name(module.__name__))


def install() -> None:
    """Put the finder first on `sys.meta_path` (once)."""
    if not any(isinstance(f, _Finder) for f in sys.meta_path):
        sys.meta_path.insert(0, _Finder())
