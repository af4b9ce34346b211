"""Thin integrations of ticketlab's pruning with training frameworks (issue 15, piece 5).

`ticketlab.integrations.lightning` (PyTorch Lightning callbacks) and `ticketlab.integrations.hf` (the
Hugging Face `Trainer`) import their framework; this package itself imports neither, so `import
ticketlab` never does. Install them with the `integrations` extra: `pip install 'ticketlab[integrations]'`.
Both are built on `ticketlab.integrations.optim` (what every framework needs from an optimizer) and on
the public objects `ticketlab.IMP`, `ticketlab.masks.enforce` and the sparse `Updater`;
docs/architecture/byo.md explains the hooks, docs/architecture/integrations.md how each framework
drives them.
"""
