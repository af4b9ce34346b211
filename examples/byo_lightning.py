"""RigL (Evci et al. 2020) on your own CNN under PyTorch Lightning: one callback, nothing else changes.

The LightningModule, its optimizer and the Trainer (with gradient clipping) are ordinary Lightning;
`SparseTraining` keeps 20 % of the weights (ERK over layers) and moves them every ΔT steps, and its
state rides in Lightning's checkpoints. Data: MNIST-1D, generated offline (no download).

    python examples/byo_lightning.py           # 20 epochs
    python examples/byo_lightning.py --tiny    # a few seconds: 60 steps
"""

import argparse
import logging

import lightning.pytorch as pl
import torch
import torch.nn.functional as F
from torch import nn

import ticketlab
from ticketlab.core import targets
from ticketlab.data import load_dataset
from ticketlab.integrations.lightning import SparseTraining

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--tiny", action="store_true", help="a smoke-test size")
args = parser.parse_args()
logging.getLogger("lightning.pytorch").setLevel(logging.WARNING)

data = load_dataset("mnist1d")
x, y, x_test, y_test = data.train.x[:, None], data.train.y, data.test.x[:, None], data.test.y
train = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=128, shuffle=True,
                                    generator=torch.Generator().manual_seed(0))
steps = 60 if args.tiny else 20 * len(train)


class CNN(pl.LightningModule):
    def __init__(self):
        super().__init__()
        self.net = nn.Sequential(nn.Conv1d(1, 16, 5, padding=2), nn.ReLU(), nn.MaxPool1d(2),
                                 nn.Conv1d(16, 32, 5, padding=2), nn.ReLU(), nn.MaxPool1d(2), nn.Flatten(),
                                 nn.Linear(32 * (x.shape[-1] // 4), 64), nn.ReLU(), nn.Linear(64, 10))

    def training_step(self, batch, i):
        xb, yb = batch
        return F.cross_entropy(self.net(xb), yb)

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.05, momentum=0.9)


torch.manual_seed(0)
model = CNN()
rigl = SparseTraining(ticketlab.RigL(end_fraction=0.75, update_interval=10 if args.tiny else 100), 0.8)
trainer = pl.Trainer(max_steps=steps, callbacks=[rigl], gradient_clip_val=1.0, accelerator="cpu", devices=1,
                     logger=False, enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False)
trainer.fit(model, train)

model.eval()
with torch.no_grad():
    acc = (model.net(x_test).argmax(1) == y_test).float().mean().item()
params = dict(model.named_parameters())
masks = rigl.updater.masks
weights = targets.prunable(model)
zero = sum(int((w == 0).sum()) for w in weights.values()) / sum(w.numel() for w in weights.values())
exact = all(bool((params[n][~m] == 0).all()) for n, m in masks.items())
print(f"RigL: {100 * zero:.1f}% sparse, {len(rigl.updater.history)} mask updates, test acc {acc:.3f}, "
      f"masks exact: {exact}")
