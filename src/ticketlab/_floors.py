"""The floors of the package, bottom to top: the one place where the layering is declared.

A module may import from its own floor and from the floors below it, never from a floor above,
and the modules never import each other in a cycle (function-local imports count).
`tests/test_layers.py` enforces both; the README's Architecture section explains each floor.
"""

FLOORS = (
    ("core",),                 # masks, scores, pruning, distributions, schedules, config, errors
    ("models", "data"),        # the registered networks and datasets
    ("methods",),              # IMP step, saliency, sparse methods: act on (model, optimizer) only
    ("training",),             # the run folder, the one loop, stacking, optimizers, the device
    ("engine",),               # store, results, executors, scheduler, run options, trainer protocol, task registry, export
    ("domains",),              # classify, rl, nlp: tasks behind the trainer protocol
    ("experiments",),          # lottery, sparse training, transfer, teacher-student
    ("reports",),              # plots, tables, the HTML report
    ("api", "sweep", "integrations"),  # the facade, the one sweep grammar, framework callbacks
    ("cli", "__main__"),       # the command line
)

# modules at the package root that belong to the bottom floor: the old-path finder (it imports
# nothing at module level) and this file
ROOT_MODULES = ("_moved", "_floors")

# The package itself (`ticketlab/__init__.py`) is a facade on the api floor: it re-exports the public
# names (`ticketlab.IMP`, `ticketlab.masks`, `ticketlab.sparsify`, ...) from the methods floor, lazily,
# and declares them in a `TYPE_CHECKING` block that the layer test reads. So nothing below the api
# floor may import from the package root: the version is `ticketlab.core.version`, the errors
# `ticketlab.core.errors`.
FACADE_FLOOR = "api"


def floor_of(module: str) -> int:
    """The floor index of a `ticketlab.*` module name (ValueError if it belongs to none)."""
    if module == "ticketlab":
        return next(i for i, names in enumerate(FLOORS) if FACADE_FLOOR in names)
    head = module.split(".")[1]
    if head in ROOT_MODULES:
        return 0
    for i, names in enumerate(FLOORS):
        if head in names:
            return i
    raise ValueError(f"{module}: not on any floor; add it to ticketlab._floors.FLOORS")
