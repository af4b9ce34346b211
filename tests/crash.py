"""A training hook that simulates a kill (Ctrl-C) at one iteration, once: the resume tests' tool."""


class Crash:
    """Raises KeyboardInterrupt after the optimizer step of iteration `at - 1` (the first time only)."""

    def __init__(self, at: int):
        self.at, self.armed = at, True

    def after_step(self, it: int) -> None:
        if self.armed and it + 1 == self.at:
            self.armed = False
            raise KeyboardInterrupt


class Stop(Exception):
    """Raised by `interrupt_teacher_student` (not a KeyboardInterrupt, so pytest can catch it)."""


def interrupt_teacher_student(specs, *, at_step: int, checkpoint_every: int) -> None:
    """Train a teacher–student group until its step-`at_step` log line, then stop it with `Stop`:
    an interruption after the checkpoint at `checkpoint_every`, as a kill would leave it."""
    import pytest

    from ticketlab.core.progress import forwarding
    from ticketlab.experiments.teacher_student.loop import fit_group

    def stop(msg):
        if f"step {at_step}:" in msg:
            raise Stop

    with forwarding(stop), pytest.raises(Stop):
        fit_group(specs, checkpoint_every=checkpoint_every, verbose=True)
