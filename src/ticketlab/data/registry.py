"""The dataset registry: names, shapes, normalisation constants, split defaults; and the data folder.

Normalisation: pixels are scaled to [0, 1] (divided by `scale`), then standardised per channel with
fixed constants, the usual ones computed over each dataset's full training set:

| dataset       | mean                     | std                      |
|---------------|--------------------------|--------------------------|
| mnist         | 0.1307                   | 0.3081                   |
| fashion-mnist | 0.2860                   | 0.3530                   |
| kmnist        | 0.1918                   | 0.3483                   |
| cifar10       | (0.4914, 0.4822, 0.4465) | (0.2470, 0.2435, 0.2616) |
| digits        | 0.3058                   | 0.3764  (our 1438-example train split, after /16) |
| mnist1d       | 0                        | 1  (the generator already standardises)           |

Default validation sizes: 5000 held out of the training set for the image datasets, as in
Frankle & Carbin, "The Lottery Ticket Hypothesis" (ICLR 2019); 500 of 4000 for mnist1d, 200 for digits.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import torch

from ticketlab.core.errors import DataError


@dataclass(frozen=True)
class Split:
    """One split of a dataset: inputs `x` (float32 [N, *input_shape], normalised) and labels `y` (int64 [N])."""

    x: torch.Tensor
    y: torch.Tensor

    def __post_init__(self):
        if self.x.shape[0] != self.y.shape[0]:
            raise DataError(f"split has {self.x.shape[0]} inputs but {self.y.shape[0]} labels")

    def __len__(self) -> int:
        return int(self.y.shape[0])


@dataclass(frozen=True)
class Dataset:
    """A loaded dataset: train / validation / test splits plus what a model needs to know."""

    name: str
    train: Split
    val: Split
    test: Split
    num_classes: int
    input_shape: tuple[int, ...]


@dataclass(frozen=True)
class DatasetInfo:
    """Static facts about one dataset. `kind` selects the loader: idx, cifar, mnist1d or digits."""

    name: str
    kind: str
    num_classes: int
    input_shape: tuple[int, ...]
    default_val_size: int
    scale: float
    mean: tuple[float, ...]
    std: tuple[float, ...]

    @property
    def generated(self) -> bool:
        """True for datasets that need no files (nothing to fetch)."""
        return self.kind in ("mnist1d", "digits")


_MNIST = dict(kind="idx", num_classes=10, input_shape=(1, 28, 28), default_val_size=5000, scale=255.0)
REGISTRY: dict[str, DatasetInfo] = {
    i.name: i
    for i in (
        DatasetInfo("mnist", mean=(0.1307,), std=(0.3081,), **_MNIST),
        DatasetInfo("fashion-mnist", mean=(0.2860,), std=(0.3530,), **_MNIST),
        DatasetInfo("kmnist", mean=(0.1918,), std=(0.3483,), **_MNIST),
        DatasetInfo("cifar10", "cifar", 10, (3, 32, 32), 5000, 255.0,
                    (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)),
        DatasetInfo("mnist1d", "mnist1d", 10, (40,), 500, 1.0, (0.0,), (1.0,)),
        DatasetInfo("digits", "digits", 10, (1, 8, 8), 200, 16.0, (0.3058,), (0.3764,)),
    )
}


def list_datasets() -> list[str]:
    """The names `load_dataset` accepts, sorted."""
    return sorted(REGISTRY)


def get_info(name: str) -> DatasetInfo:
    """The registry entry for `name`; an unknown name raises `DataError` listing the known ones."""
    try:
        return REGISTRY[name]
    except (KeyError, TypeError):
        raise DataError(f"unknown dataset {name!r}; known: {', '.join(list_datasets())}") from None


def resolve_data_dir(data_dir: str | os.PathLike | None = None) -> Path:
    """The folder holding the dataset folders (mnist/, cifar10/, ...).

    Precedence: the explicit argument (the CLI's --data-dir), then the environment variable
    TICKETLAB_DATA, then ~/.cache/ticketlab. The folder is not created here.
    """
    if data_dir is not None and str(data_dir) != "":
        return Path(data_dir).expanduser()
    env = os.environ.get("TICKETLAB_DATA")
    if env:
        return Path(env).expanduser()
    return default_data_dir()


def resolve_cache_dir() -> Path:
    """The folder for caches ticketlab derives itself (the MNIST-1D arrays, tokenizers):
    $TICKETLAB_CACHE, then ~/.cache/ticketlab. Never the data folder, which may be shared or
    read-only and is only ever written by `ticketlab data fetch`."""
    env = os.environ.get("TICKETLAB_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "ticketlab"


def default_data_dir() -> Path:
    """~/.cache/ticketlab, the data folder when neither --data-dir nor TICKETLAB_DATA is given."""
    return Path.home() / ".cache" / "ticketlab"
