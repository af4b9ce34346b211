"""Floor 4, the engine: the results store, result rows, executors, the task registry and the
trainer protocol through which a domain plugs in.
"""
