"""IMP with late rewinding (Frankle et al. 2019, "Stabilizing the LTH") on your own CNN, in a plain loop.

ticketlab owns nothing here but the pruning: the model, the optimizer, the data order and the loop
(with gradient clipping) are ordinary PyTorch. Data: MNIST-1D, generated offline (no download).

    python examples/byo_pytorch.py           # 5 levels of 3000 iterations, rewinding to iteration 300
    python examples/byo_pytorch.py --tiny    # a few seconds: 2 levels of 60 iterations
"""

import argparse

import torch
import torch.nn.functional as F
from torch import nn

import ticketlab
from ticketlab.data import load_dataset

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--tiny", action="store_true", help="a smoke-test size")
args = parser.parse_args()
iterations, levels, k = (60, 2, 10) if args.tiny else (3000, 5, 300)

data = load_dataset("mnist1d")
x, y, x_test, y_test = data.train.x[:, None], data.train.y, data.test.x[:, None], data.test.y
torch.manual_seed(0)
model = nn.Sequential(nn.Conv1d(1, 16, 5, padding=2), nn.ReLU(), nn.MaxPool1d(2),
                      nn.Conv1d(16, 32, 5, padding=2), nn.ReLU(), nn.MaxPool1d(2), nn.Flatten(),
                      nn.Linear(32 * (x.shape[-1] // 4), 64), nn.ReLU(), nn.Linear(64, 10))
optimizer = torch.optim.Adam(model.parameters(), lr=2e-3)
imp = ticketlab.IMP(prune_fraction=0.2, conv_fraction=0.1, rewind_iter=k).attach(model, optimizer)

for level in range(levels + 1):
    model.train()
    for it in range(0 if level == 0 else k, iterations):  # a rewound level restarts at iteration k
        idx = torch.randint(len(x), (128,), generator=torch.Generator().manual_seed(it))
        optimizer.zero_grad()
        F.cross_entropy(model(x[idx]), y[idx]).backward()
        nn.utils.clip_grad_norm_(model.parameters(), 5.0)
        optimizer.step()
    model.eval()
    with torch.no_grad():
        acc = (model(x_test).argmax(1) == y_test).float().mean().item()
    print(f"level {level}: {100 * ticketlab.masks.density(imp.masks):5.1f}% of weights left, test acc {acc:.3f}")
    if level < levels:
        imp.prune()   # the smallest |w|: 20 % per fc layer, 10 % per conv layer, 10 % of the output layer
        imp.rewind()  # weights back to θk, masked; a fresh optimizer state
