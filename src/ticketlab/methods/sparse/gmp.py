"""Gradual magnitude pruning (Zhu & Gupta 2017, "To prune, or not to prune", arXiv 1710.01878).

Dense-to-sparse: training starts dense; at `begin_step` and then every `frequency` steps up to
`end_step`, each masked layer is pruned by |w| down to its cubic-schedule target
s_l(t) = s_l + (s_i − s_l)(1 − (t − t0)/(t1 − t0))³ (`ticketlab.core.schedules.gmp_sparsity`), where s_l is
the layer's final sparsity from the distribution, keeping exactly N − ⌊s_l(t)·N⌋ weights. Pruned
weights never return. The optimizer steps on update steps (the rigl ``prune`` baseline,
``tf.contrib.model_pruning``).

Difference: an update also happens at `end_step` itself when it is off the `frequency` grid, so the
final sparsity is always reached (tf.contrib.model_pruning would stop one interval short of it).
"""

from __future__ import annotations

from dataclasses import dataclass

from ticketlab.core.distributions import nnz as keep_count
from ticketlab.core.errors import ConfigError
from ticketlab.core.schedules import gmp_sparsity
from ticketlab.methods.sparse.updater import Method


@dataclass(frozen=True)
class GMP(Method):
    """Gradual magnitude pruning from dense to the target sparsity on Zhu & Gupta's cubic schedule."""

    name = "gmp"
    updates = True
    regrows = False
    dense_start = True
    begin_step: int = 0  # t0: first pruning step
    end_step: int = 1000  # t1: the final sparsity is reached here
    frequency: int = 100  # Δt: steps between pruning steps
    initial_sparsity: float = 0.0  # s_i

    def __post_init__(self):
        if isinstance(self.frequency, bool) or not isinstance(self.frequency, int) or self.frequency < 1:
            raise ConfigError(f"frequency must be a positive integer, got {self.frequency!r}")
        if self.begin_step < 0 or self.end_step < self.begin_step:
            raise ConfigError(f"need 0 <= begin_step <= end_step, got {self.begin_step}, {self.end_step}")
        if not 0.0 <= self.initial_sparsity < 1.0:
            raise ConfigError(f"initial_sparsity must be in [0, 1), got {self.initial_sparsity!r}")

    def is_update(self, step: int) -> bool:
        if not self.begin_step <= step <= self.end_step:
            return False
        return (step - self.begin_step) % self.frequency == 0 or step == self.end_step

    def sparsity_at(self, step: int, final: float) -> float:
        return gmp_sparsity(step, final=final, initial=min(self.initial_sparsity, final),
                            begin_step=self.begin_step, end_step=self.end_step)

    def drop_fraction_at(self, step: int) -> float:
        return 0.0

    def n_drop(self, step: int, nnz: int, numel: int, sparsity: float) -> int:
        return max(nnz - keep_count(numel, self.sparsity_at(step, sparsity)), 0)
