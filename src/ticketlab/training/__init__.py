"""Floor 3, training: the one training loop, stacked models, optimizers and sparse export.
"""
