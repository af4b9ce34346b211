"""Floor 0, the core: masks, scores, pruning, layer distributions, schedules and typed configs.

Pure tensor and dataclass code with no knowledge of models, data, training or storage. Every other
floor builds on it; it imports nothing from ticketlab outside itself.
"""
