"""Floor 4, the engine: the results store, result rows, executors, the one scheduler of runs, the
domain registry and the trainer protocol through which a domain plugs in.
"""
