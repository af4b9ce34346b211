"""Argument checks shared by the model constructors.

Every check raises `ticketlab.core.errors.ConfigError` with a message naming the offending value, so a
bad option surfaces as one readable line (no TypeError from deep inside `torch.nn`).
"""

from __future__ import annotations

import math
import operator
from collections.abc import Iterable

from ticketlab.core.errors import ConfigError


def as_int(value: object) -> int | None:
    """`value` as a Python int if it is an integer (numpy integers included, bools not), else None."""
    if isinstance(value, bool):
        return None
    try:
        return operator.index(value)  # type: ignore[arg-type]
    except TypeError:
        return None


def positive_int(value: object, what: str) -> int:
    """Return `value` as an int if it is an integer >= 1 (bools rejected), else raise ConfigError."""
    number = as_int(value)
    if number is None or number < 1:
        raise ConfigError(f"{what} must be a positive integer, got {value!r}")
    return number


def int_tuple(value: object, what: str, *, allow_empty: bool = True) -> tuple[int, ...]:
    """Return `value` as a tuple of positive ints (any iterable of ints accepted, not a str)."""
    if isinstance(value, (str, bytes)) or not isinstance(value, Iterable):
        raise ConfigError(f"{what} must be a sequence of positive integers, got {value!r}")
    items = tuple(as_int(item) for item in value)
    if any(item is None or item < 1 for item in items):
        raise ConfigError(f"{what} must be a sequence of positive integers, got {value!r}")
    if not items and not allow_empty:
        raise ConfigError(f"{what} must not be empty")
    return items  # type: ignore[return-value]


def probability(value: object, what: str) -> float:
    """Return `value` as a float in [0, 1), else raise ConfigError."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= value < 1.0:
        raise ConfigError(f"{what} must be a number in [0, 1), got {value!r}")
    return float(value)


def input_shape(value: object) -> tuple[int, ...]:
    """Return `value` (the shape of one example, without the batch dim) as a tuple of positive ints."""
    return int_tuple(value, "input_shape", allow_empty=False)


def image_shape(value: object, model: str) -> tuple[int, int, int]:
    """Return a (channels, height, width) input shape, or raise ConfigError naming `model`."""
    shape = input_shape(value)
    if len(shape) != 3:
        raise ConfigError(
            f"model {model!r} needs input_shape (channels, height, width), got {tuple(shape)!r}"
        )
    return shape[0], shape[1], shape[2]


def num_features(shape: tuple[int, ...]) -> int:
    """Number of input features after flattening one example of `shape`."""
    return math.prod(shape)


def conv_out(size: int, kernel: int, padding: int = 0, stride: int = 1) -> int:
    """Spatial size after a convolution or pooling window (PyTorch's floor rule)."""
    return (size + 2 * padding - kernel) // stride + 1
