"""ticketlab: lottery tickets and sparse training.

Find, train, compare, transfer and explain sparse subnetworks ("winning tickets").
See README.md for the commands; the Python API mirrors the CLI one to one.

On your own model and training loop (issue 15), the public names are importable from here:

    import ticketlab
    imp = ticketlab.IMP(prune_fraction=0.2, rewind_iter=100).attach(model, optimizer)
    handle = ticketlab.masks.enforce(model, optimizer, masks)
    masks = ticketlab.prune_once(model, 0.9, score="snip", data=(x, y))
    updater = ticketlab.sparsify(model, optimizer, ticketlab.RigL(end_step=7500), 0.9)

They load on first use (`__getattr__` below), so `import ticketlab` imports neither torch nor an
experiment. This makes the package itself a facade on the api floor (`ticketlab._floors`): the
`TYPE_CHECKING` block names every export's module, so type checkers and the layer test see them.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from ticketlab import _moved
from ticketlab.core.errors import TicketlabError, ConfigError, DataError
from ticketlab.core.version import __version__

_moved.install()  # old import paths (ticketlab.train, ticketlab.lottery, ...) for one release

if TYPE_CHECKING:
    from ticketlab.core import masks
    from ticketlab.methods.imp import IMP
    from ticketlab.methods.oneshot import prune_once
    from ticketlab.methods.sparse import GMP, SET, SNFS, SNIP, Dense, GraSP, RigL, Static, SynFlow, sparsify

# export -> the module that defines it (a module itself when the name is the module's last part)
_LAZY = {
    "masks": "ticketlab.core.masks",
    "IMP": "ticketlab.methods.imp",
    "prune_once": "ticketlab.methods.oneshot",
    **{n: "ticketlab.methods.sparse" for n in ("sparsify", "RigL", "SET", "SNFS", "GMP", "Static", "Dense",
                                               "SNIP", "GraSP", "SynFlow")},
}


def __getattr__(name: str):
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'ticketlab' has no attribute {name!r}")
    loaded = importlib.import_module(module)
    value = loaded if module.rsplit(".", 1)[-1] == name else getattr(loaded, name)
    globals()[name] = value  # later lookups skip __getattr__
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))


__all__ = ["TicketlabError", "ConfigError", "DataError", "__version__", *_LAZY]
