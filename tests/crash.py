"""A training hook that simulates a kill (Ctrl-C) at one iteration, once: the resume tests' tool."""


class Crash:
    """Raises KeyboardInterrupt after the optimizer step of iteration `at - 1` (the first time only)."""

    def __init__(self, at: int):
        self.at, self.armed = at, True

    def after_step(self, it: int) -> None:
        if self.armed and it + 1 == self.at:
            self.armed = False
            raise KeyboardInterrupt
