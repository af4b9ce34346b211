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

from ticketlab.core.config import param
from ticketlab.core.distributions import nnz as keep_count
from ticketlab.core.errors import ConfigError
from ticketlab.core.schedules import gmp_sparsity
from ticketlab.methods.sparse.updater import Method, training_fraction


@dataclass(frozen=True)
class GMP(Method):
    """Gradual magnitude pruning from dense to the target sparsity on Zhu & Gupta's cubic schedule."""

    name = "gmp"
    updates = True
    regrows = False
    dense_start = True
    begin_step: int = param(0, "t0: first pruning step", min=0)
    end_step: int = param(1000, "t1: the step at which the final sparsity is reached", min=0)
    frequency: int = param(100, "Δt: steps between pruning steps", min=1)
    initial_sparsity: float = param(0.0, "s_i: sparsity at the first pruning step", min=0.0, max=0.9999)
    begin_fraction: float | None = training_fraction("begin_step", "first pruning step")
    end_fraction: float | None = training_fraction("end_step", "step reaching the target sparsity")

    def check(self):
        super().check()
        if self.begin_fraction is not None and self.end_fraction is not None:
            if self.begin_fraction > self.end_fraction:
                raise ConfigError(f"begin_fraction: got {self.begin_fraction}, expected <= end_fraction "
                                  f"({self.end_fraction})")
        elif self.begin_fraction is None and self.end_fraction is None and self.begin_step > self.end_step:
            raise ConfigError(f"begin_step: got {self.begin_step}, expected <= end_step ({self.end_step})")

    def is_update(self, step: int) -> bool:
        if not self.begin_step <= step <= self.end_step:
            return False
        return (step - self.begin_step) % self.frequency == 0 or step == self.end_step

    def sparsity_at(self, step: int, final: float) -> float:
        return gmp_sparsity(step, final=final, initial=min(self.initial_sparsity, final),
                            begin_step=self.begin_step, end_step=self.end_step)

    def drop_fraction_at(self, step: int) -> float:
        return 0.0

    def final_from(self) -> int:
        return self.end_step + 1  # the step with index end_step prunes to the target; then it has been taken

    def n_drop(self, step: int, nnz: int, numel: int, sparsity: float) -> int:
        return max(nnz - keep_count(numel, self.sparsity_at(step, sparsity)), 0)
