"""Floor 5, the domains: classification, reinforcement learning and language models, each a
task behind the trainer protocol (`ticketlab.engine.trainer.Trainer`).
"""
