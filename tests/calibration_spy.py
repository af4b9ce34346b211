"""What the stacking calibration (`ticketlab.engine.calibrate.measure`) trains, recorded by a spy on
`fit_many`: used by tests/test_calibrate.py and tests/test_stacked_conv.py."""

from __future__ import annotations

from ticketlab.engine import calibrate


def spy_on_fit_many(monkeypatch) -> list:
    """Record (stack class, runs, iterations, batch size, optimizer) of every `fit_many` call while it trains."""
    from ticketlab.training import loop
    calls, real = [], loop.fit_many

    def spy(runs, data, cfg, ensemble, **kw):
        calls.append((type(ensemble).__name__, len(runs), cfg.iterations, cfg.batch_size, cfg.optimizer))
        return real(runs, data, cfg, ensemble, **kw)
    monkeypatch.setattr(loop, "fit_many", spy)
    return calls


def expected_calls(stack: str, recipe: tuple) -> list:
    """What `measure` trains: a warm-up of each variant, then ROUNDS rounds in alternating order, each
    of the stack of MODELS and of MODELS models one at a time."""
    def variant(name, steps):
        return [(name, calibrate.MODELS, steps, *recipe)] if name == stack else \
            [("Single", 1, steps, *recipe)] * calibrate.MODELS
    out = variant(stack, calibrate.WARMUP) + variant("Single", calibrate.WARMUP)
    for r in range(calibrate.ROUNDS):
        order = [stack, "Single"] if r % 2 == 0 else ["Single", stack]
        out += [c for v in order for c in variant(v, calibrate.STEPS)]
    return out
