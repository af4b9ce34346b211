"""`sparsify` in loops that are not ticketlab's: wrapped optimizers, a skipping GradScaler, checkpoint
resume through `optimizer.state_dict()`, and DistributedDataParallel (issue 15, piece 4)."""

from __future__ import annotations

import io
import os
import socket

import pytest
import torch
from torch import nn

from ticketlab.methods.sparse import SET, RigL, sparsify


def net(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(8, 32), nn.ReLU(), nn.Linear(32, 32), nn.ReLU(), nn.Linear(32, 3))


def batches(n: int, seed: int = 2):
    g = torch.Generator().manual_seed(seed)
    return [(torch.randn(16, 8, generator=g), torch.randint(0, 3, (16,), generator=g)) for _ in range(n)]


def train(model, opt, data):
    for x, y in data:
        opt.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        opt.step()


def assert_masked(model, masks):
    params = dict(model.named_parameters())
    for n, m in masks.items():
        assert int(params[n].detach()[~m].count_nonzero()) == 0, n


class Wrapper(torch.optim.Optimizer):
    """The shape of accelerate's AcceleratedOptimizer / Lightning's wrapper: the real one in `.optimizer`."""

    def __init__(self, optimizer):  # no super().__init__: like accelerate, it owns no hooks of its own
        self.optimizer = optimizer

    @property
    def param_groups(self):
        return self.optimizer.param_groups

    @property
    def state(self):
        return self.optimizer.state

    def zero_grad(self, set_to_none=True):
        self.optimizer.zero_grad(set_to_none)

    def step(self, closure=None):
        return self.optimizer.step(closure)

    def state_dict(self):
        return self.optimizer.state_dict()

    def load_state_dict(self, state_dict):
        self.optimizer.load_state_dict(state_dict)


RIGL = RigL(update_interval=4, end_step=40, drop_fraction=0.3)


def test_sparsify_lands_on_the_real_optimizer_inside_a_wrapper():
    plain, wrapped = net(), net()
    u1 = sparsify(plain, torch.optim.SGD(plain.parameters(), lr=0.1, momentum=0.9), RIGL, 0.8)
    inner = torch.optim.SGD(wrapped.parameters(), lr=0.1, momentum=0.9)
    opt = Wrapper(Wrapper(inner))
    u2 = sparsify(wrapped, opt, RIGL, 0.8)
    assert u2._optimizer is inner
    train(plain, u1._optimizer, batches(30))
    train(wrapped, opt, batches(30))
    assert u2.step == u1.step == 30 and len(u2.history) == len(u1.history) == 8
    assert all(torch.equal(u1.masks[n], u2.masks[n]) for n in u1.masks)
    assert all(torch.equal(a, b) for a, b in zip(plain.parameters(), wrapped.parameters()))
    assert_masked(wrapped, u2.masks)


@pytest.mark.parametrize("fused", [False, True])
def test_a_step_the_grad_scaler_skips_moves_neither_masks_nor_step_count(fused):
    model = net()
    opt = torch.optim.Adam(model.parameters(), lr=1e-2, fused=fused)
    u = sparsify(model, opt, RigL(update_interval=2, end_step=40, drop_fraction=0.3), 0.8)
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0 ** 8)
    params = dict(model.named_parameters())
    data = batches(6)
    for i, (x, y) in enumerate(data):
        opt.zero_grad()
        scaler.scale(nn.functional.cross_entropy(model(x), y)).backward()
        if i == 3:  # an overflow: the scaler must skip this step
            params["0.weight"].grad[0, 0] = float("inf")
            before = (u.step, len(u.history), {n: m.clone() for n, m in u.masks.items()},
                      {n: p.detach().clone() for n, p in params.items()})
        scaler.step(opt)
        scaler.update()
        if i == 3:
            assert (u.step, len(u.history)) == before[:2] == (3, 2)  # steps 0..2; 0 and 2 were updates
            assert all(torch.equal(u.masks[n], m) for n, m in before[2].items())
            assert all(torch.equal(params[n], p) for n, p in before[3].items())
    assert u.step == 5 and len(u.history) == 3 and scaler.get_scale() < 2.0 ** 8
    assert_masked(model, u.masks)


@pytest.mark.parametrize("method", [RIGL, SET(update_interval=4, end_step=40, drop_fraction=0.3)])
def test_a_checkpoint_of_the_optimizer_resumes_the_same_schedule_bit_for_bit(method):
    data = batches(30)
    full = net()
    opt = torch.optim.Adam(full.parameters(), lr=1e-2)
    u_full = sparsify(full, opt, method, 0.8, seed=7)
    train(full, opt, data)

    first = net()
    opt1 = torch.optim.Adam(first.parameters(), lr=1e-2)
    sparsify(first, opt1, method, 0.8, seed=7)
    train(first, opt1, data[:13])  # stop between two updates
    buf = io.BytesIO()
    torch.save({"model": first.state_dict(), "optimizer": opt1.state_dict()}, buf)
    buf.seek(0)
    ckpt = torch.load(buf, weights_only=True)
    assert ckpt["optimizer"]["ticketlab_sparse"]["step"] == 13

    resumed = net(seed=5)  # a fresh process: other weights, other masks until the checkpoint loads
    opt2 = torch.optim.Adam(resumed.parameters(), lr=1e-2)
    u2 = sparsify(resumed, opt2, method, 0.8, seed=7)
    resumed.load_state_dict(ckpt["model"])
    opt2.load_state_dict(ckpt["optimizer"])
    assert u2.step == 13
    train(resumed, opt2, data[13:])
    assert u2.step == u_full.step == 30 and u2.history == u_full.history
    assert all(torch.equal(u_full.masks[n], u2.masks[n]) for n in u_full.masks)
    assert all(torch.equal(a, b) for a, b in zip(full.parameters(), resumed.parameters()))
    torch.optim.Adam(net().parameters()).load_state_dict(ckpt["optimizer"])  # a plain optimizer ignores it


# ---- DistributedDataParallel: 2 CPU processes, gloo over loopback ------------------------------------

def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _ddp_worker(rank: int, world: int, port: int, out: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.distributed.init_process_group("gloo", rank=rank, world_size=world)
    try:
        torch.set_num_threads(1)
        model = nn.parallel.DistributedDataParallel(net(seed=rank))  # rank 0's weights are broadcast
        opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
        # different seeds per rank on purpose: rank 0's seed and masks must win
        u = sparsify(model, opt, RigL(update_interval=3, end_step=30, drop_fraction=0.3), 0.8, seed=rank)
        snapshots = []
        for x, y in batches(16, seed=10 + rank):  # each rank its own shard of the data
            opt.zero_grad()
            nn.functional.cross_entropy(model(x), y).backward()
            opt.step()
            if u.method.is_update(u.step - 1):
                snapshots.append({n: m.clone() for n, m in u.masks.items()})
        torch.save({"masks": snapshots, "history": u.history,
                    "weights": [p.detach().clone() for p in model.parameters()]}, f"{out}/rank{rank}.pt")
    finally:
        torch.distributed.destroy_process_group()


def test_under_ddp_every_rank_holds_the_same_masks_after_each_rigl_update(tmp_path):
    torch.multiprocessing.spawn(_ddp_worker, args=(2, _free_port(), str(tmp_path)), nprocs=2, join=True)
    r0, r1 = (torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in (0, 1))
    assert len(r0["masks"]) == len(r1["masks"]) == 6  # updates at steps 0, 3, ..., 15
    assert sum(sum(row["grown"]["module.0.weight"]) for row in r0["history"]) > 0  # the masks did change
    for a, b in zip(r0["masks"], r1["masks"]):
        assert all(torch.equal(a[n], b[n]) for n in a)
    assert r0["history"] == r1["history"]
    assert all(torch.equal(a, b) for a, b in zip(r0["weights"], r1["weights"]))


def test_sparsify_and_the_integrations_carry_one_state_in_the_optimizer_state_dict():
    """`sparsify`'s state and the integrations' `SparseCheckpoint` ride under one key in one format, by
    one carrier: a checkpoint of either resumes the other with the same masks, step and history."""
    from ticketlab.integrations.optim import SparseCheckpoint
    from ticketlab.methods.sparse import updater_for
    from ticketlab.methods.sparse.updater import STATE_KEY

    model = net()
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    u = sparsify(model, opt, RIGL, 0.8)
    train(model, opt, batches(9))
    saved = opt.state_dict()
    assert saved[STATE_KEY]["step"] == 9 and len(saved[STATE_KEY]["history"]) == 3

    model2 = net(seed=5)
    opt2 = torch.optim.Adam(model2.parameters(), lr=1e-2)
    updater, params = updater_for(model2, RIGL, 0.8)
    carry = SparseCheckpoint(updater, opt2, params)
    assert not carry.attached and STATE_KEY not in opt2.state_dict()  # nothing to save before it attaches
    opt2.load_state_dict(saved)  # attaches with the checkpoint's masks
    assert carry.attached and carry.updater.step == 9 and carry.updater.history == u.history
    assert all(torch.equal(carry.updater.masks[n], m) for n, m in u.masks.items())
    assert_masked(model2, u.masks)

    model3 = net(seed=6)
    opt3 = torch.optim.Adam(model3.parameters(), lr=1e-2)
    u3 = sparsify(model3, opt3, RIGL, 0.8)
    opt3.load_state_dict(opt2.state_dict())  # and back: sparsify resumes a SparseCheckpoint's state
    assert u3.step == 9 and all(torch.equal(u3.masks[n], m) for n, m in u.masks.items())
    carry.remove()
    assert STATE_KEY not in opt2.state_dict()
