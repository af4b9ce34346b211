"""ticketlab under PyTorch Lightning and the Hugging Face Trainer (issue 15, piece 5).

Real frameworks (the `integrations` extra), tiny models built from configs, generated data, CPU only,
nothing downloaded. Each framework clips gradients here; the tests check that the masks stay exact,
that rewinding restores θk bit for bit, and that a checkpoint resume restores the masks.
"""

from __future__ import annotations

import os

import pytest
import torch
from torch import nn

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # never reach a hub, even by accident
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

try:
    import lightning.pytorch as pl
except ImportError:
    pl = None
try:
    import transformers
except ImportError:
    transformers = None

# CI installs the extra, so there a missing framework is a failure, not a skip
needs_lightning = pytest.mark.skipif(pl is None and not os.environ.get("CI"),
                                     reason="lightning is not installed: pip install 'ticketlab[integrations]'")
needs_transformers = pytest.mark.skipif(transformers is None and not os.environ.get("CI"),
                                        reason="transformers is not installed: pip install 'ticketlab[integrations]'")

import ticketlab  # noqa: E402


def exact(model: nn.Module, masks: dict, optimizer: torch.optim.Optimizer | None = None) -> bool:
    """Every pruned weight is exactly zero (and, with `optimizer`, every state tensor there too)."""
    params = dict(model.named_parameters())
    for n, m in masks.items():
        if params[n][~m].abs().sum() != 0:
            return False
        if optimizer is not None:
            for v in optimizer.state.get(params[n], {}).values():
                if torch.is_tensor(v) and v.shape == m.shape and v[~m].abs().sum() != 0:
                    return False
    return True


def snapshot(model: nn.Module) -> dict:
    return {n: p.detach().clone() for n, p in model.named_parameters()}


def test_importing_ticketlab_imports_no_framework():
    import subprocess
    import sys

    code = ("import sys, ticketlab, ticketlab.integrations, ticketlab.integrations.optim; ticketlab.IMP; "
            "bad = [m for m in ('lightning', 'transformers') if m in sys.modules]; assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], check=True)


# ---- Lightning ----------------------------------------------------------------------------------

def lightning_module(seed: int = 0):
    class Classifier(pl.LightningModule):
        def __init__(self):
            super().__init__()
            torch.manual_seed(seed)
            self.net = nn.Sequential(nn.Linear(8, 32), nn.ReLU(), nn.Linear(32, 32), nn.ReLU(), nn.Linear(32, 3))

        def training_step(self, batch, i):
            x, y = batch
            return nn.functional.cross_entropy(self.net(x), y)

        def configure_optimizers(self):
            return torch.optim.Adam(self.parameters(), lr=1e-2)

    return Classifier()


def loader(n: int = 256, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 8, generator=g)
    ds = torch.utils.data.TensorDataset(x, (x[:, 0] > 0).long() + (x[:, 1] > 0.5).long())
    return torch.utils.data.DataLoader(ds, batch_size=32, shuffle=False)


def lightning_trainer(epochs: int, callbacks, **kw):
    return pl.Trainer(max_epochs=epochs, callbacks=callbacks, accelerator="cpu", devices=1, logger=False,
                      enable_progress_bar=False, enable_model_summary=False, enable_checkpointing=False,
                      gradient_clip_val=0.1, **kw)


class AtStep(pl.Callback if pl else object):
    """Records the weights after optimizer step k, and at every train start."""

    def __init__(self, k: int):
        self.k, self.at_k, self.starts = k, None, []

    def on_train_start(self, trainer, module):
        self.starts.append(snapshot(module))

    def on_train_batch_end(self, trainer, module, *args):
        if trainer.global_step == self.k and self.at_k is None:
            self.at_k = snapshot(module)


@needs_lightning
def test_lightning_rigl_keeps_masks_and_optimizer_state_exact_with_clipping():
    from ticketlab.integrations.lightning import SparseTraining

    module = lightning_module()
    sparse = SparseTraining(ticketlab.RigL(end_step=30, update_interval=5), 0.8)
    trainer = lightning_trainer(4, [sparse])
    trainer.fit(module, loader())  # 32 optimizer steps, gradients clipped at 0.1 inside step(closure)
    u = sparse.updater
    assert u.step == trainer.global_step == 32 and len(u.history) == 7  # updates at 0, 5, ..., 30
    assert sum(r["grown"]["net.0.weight"][0] for r in u.history) > 0  # connections did move
    # the closure runs before the step hooks: no Adam moment builds up at an inactive position
    assert exact(module, u.masks, trainer.optimizers[0])
    kept = {n: int(m.sum()) for n, m in u.masks.items()}
    assert all(u.history[-1]["nnz"][n] == k for n, k in kept.items())  # exact counts after every update

    class Start(pl.Callback):
        def on_train_start(self, trainer, module):
            self.masks, self.step = {n: m.clone() for n, m in sparse.updater.masks.items()}, sparse.updater.step

    start = Start()
    again = lightning_trainer(5, [sparse, start])
    again.fit(module, loader())  # a second fit (a fresh optimizer) goes on where the first stopped
    assert start.step == 32 and all(torch.equal(start.masks[n], u.masks[n]) for n in u.masks)
    assert sparse.updater.step == 32 + 40 and exact(module, sparse.updater.masks, again.optimizers[0])



@needs_lightning
def test_lightning_lottery_ticket_rewinds_to_theta_k_bit_for_bit():
    from ticketlab.integrations.lightning import LotteryTicket

    module = lightning_module()
    ticket = LotteryTicket(ticketlab.IMP(prune_fraction=0.5, rewind_iter=3))
    record = AtStep(3)
    lightning_trainer(2, [ticket, record]).fit(module, loader())  # level 0, dense
    assert ticket.imp.level == 0 and ticket.imp.masks["net.0.weight"].all()
    thetak = record.at_k
    lightning_trainer(2, [ticket, record]).fit(module, loader())  # level 1: prune, rewind, train
    masks = ticket.imp.masks
    kept = {n: int(m.sum()) for n, m in masks.items()}
    assert ticket.imp.level == 1 and kept == {"net.0.weight": 128, "net.2.weight": 512, "net.4.weight": 72}
    rewound = record.starts[1]
    for n, w in thetak.items():
        expected = w * masks[n] if n in masks else w
        assert torch.equal(rewound[n], expected), n
    assert exact(module, masks, ticket.imp.optimizer)


@needs_lightning
@pytest.mark.parametrize("kind", ["sparse", "lottery"])
def test_lightning_checkpoint_resume_restores_the_masks(tmp_path, kind):
    from ticketlab.integrations.lightning import LotteryTicket, SparseTraining

    def callback():
        if kind == "sparse":
            return SparseTraining(ticketlab.SET(end_step=60, update_interval=4), 0.7)
        return LotteryTicket(ticketlab.IMP(prune_fraction=0.3, rewind_iter=2))

    def masks_of(cb):
        return cb.updater.masks if kind == "sparse" else cb.imp.masks

    module, cb = lightning_module(), callback()
    if kind == "lottery":  # level 0, so that the checkpoint's level 1 has pruned masks
        lightning_trainer(1, [cb]).fit(module, loader())
    trainer = lightning_trainer(2, [cb])
    trainer.fit(module, loader())
    path = tmp_path / "last.ckpt"
    trainer.save_checkpoint(path)
    saved = {n: m.clone() for n, m in masks_of(cb).items()}
    assert not all(bool(m.all()) for m in saved.values())

    class Check(pl.Callback):
        def on_train_start(self, trainer, module):
            self.masks = {n: m.clone() for n, m in masks_of(cb2).items()}

    module2, cb2, check = lightning_module(seed=1), callback(), Check()  # fresh weights, fresh masks
    trainer2 = lightning_trainer(3, [cb2, check])
    trainer2.fit(module2, loader(), ckpt_path=path)
    assert set(check.masks) == set(saved) and all(torch.equal(check.masks[n], saved[n]) for n in saved)
    if kind == "lottery":
        assert cb2.imp.level == 1 and all(torch.equal(cb2.imp.thetak[n], cb.imp.thetak[n]) for n in saved)
    else:
        assert cb2.updater.step == 3 * 8  # it went on counting from the checkpoint's step 16
    assert exact(module2, masks_of(cb2), trainer2.optimizers[0])


# Lightning's own AMP plugin with a GradScaler on the CPU: Trainer(precision="16-mixed") falls back to
# bf16 (no scaler) on a CPU, so the plugin is given explicitly; autocast, scale, unscale_, clipping,
# scaler.step and update are then all Lightning's.
def scaled_trainer(epochs: int, callbacks, skip_at: int, **kw):
    from lightning.pytorch.plugins.precision import MixedPrecision

    scaler = torch.amp.GradScaler("cpu", init_scale=2.0 ** 8)
    inf = InfAt(skip_at)
    trainer = lightning_trainer(epochs, [*callbacks, inf], plugins=[MixedPrecision("16-mixed", "cpu", scaler=scaler)],
                                **kw)
    return trainer, scaler, inf


class InfAt(pl.Callback if pl else object):
    """Writes inf into one gradient at global step `step` (the scaler must skip that step), and records
    the weights just before and just after it."""

    def __init__(self, step: int):
        self.step, self.before, self.after = step, None, None

    def on_after_backward(self, trainer, module):
        if trainer.global_step == self.step and self.before is None:
            self.before = snapshot(module)
            module.net[2].bias.grad[0] = float("inf")

    def on_train_batch_end(self, trainer, module, *args):
        if self.before is not None and self.after is None:
            self.after = snapshot(module)


@needs_lightning
def test_lightning_rigl_under_a_grad_scaler_that_skips_a_step_keeps_masks_and_schedule_exact():
    from ticketlab.integrations.lightning import SparseTraining

    module = lightning_module()
    sparse = SparseTraining(ticketlab.RigL(end_step=30, update_interval=5), 0.8)
    trainer, scaler, inf = scaled_trainer(2, [sparse], skip_at=5)  # 16 batches; 5 would be an update
    trainer.fit(module, loader())
    u = sparse.updater
    assert scaler.get_scale() < 2.0 ** 8 and all(torch.equal(inf.before[n], w) for n, w in inf.after.items())
    # Lightning counts the skipped batch; the Updater, and so RigL's schedule, does not
    assert trainer.global_step == 16 and u.step == 15
    assert [r["step"] for r in u.history] == [0, 5, 10]
    assert exact(module, u.masks, trainer.optimizers[0])


@needs_lightning
def test_lightning_lottery_ticket_under_a_grad_scaler_rewinds_to_theta_k_of_the_steps_taken():
    """θk is the weights after k optimizer steps taken (the skipped one does not count); every level
    is a whole fit: it reruns the whole schedule from θk, under its own fresh optimizer."""
    from ticketlab.integrations.lightning import LotteryTicket

    module = lightning_module()
    ticket, record = LotteryTicket(ticketlab.IMP(prune_fraction=0.5, rewind_iter=3)), AtStep(4)
    trainer, scaler, _ = scaled_trainer(2, [ticket, record], skip_at=1)  # steps 0, 2, 3 are the first three
    trainer.fit(module, loader())
    assert scaler.get_scale() < 2.0 ** 8 and ticket.imp.steps == 3
    assert all(torch.equal(ticket.imp.thetak[n], w) for n, w in record.at_k.items())
    again, _, _ = scaled_trainer(2, [ticket, record], skip_at=6)  # level 1, with a skip of its own
    again.fit(module, loader())
    masks = ticket.imp.masks
    assert ticket.imp.level == 1 and not masks["net.0.weight"].all()
    for n, w in record.at_k.items():  # the level started from θk, masked, bit for bit
        assert torch.equal(record.starts[1][n], w * masks[n] if n in masks else w), n
    assert again.global_step == 16  # the whole schedule again, not 16 − k steps
    assert exact(module, masks, ticket.imp.optimizer)


# ---- Hugging Face Trainer -----------------------------------------------------------------------

def tiny_bert(seed: int = 0):
    config = transformers.BertConfig(vocab_size=100, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                                     intermediate_size=64, max_position_embeddings=32, num_labels=2)
    torch.manual_seed(seed)
    return transformers.BertForSequenceClassification(config)


class Tokens(torch.utils.data.Dataset):
    """Random token sequences; the label says whether token 7 occurs (a task a tiny BERT learns)."""

    def __init__(self, n: int, seed: int = 0, length: int = 12):
        g = torch.Generator().manual_seed(seed)
        self.ids = torch.randint(10, 100, (n, length), generator=g)
        hit = torch.rand(n, generator=g) < 0.5
        self.ids[hit, torch.randint(0, length, (int(hit.sum()),), generator=g)] = 7
        self.labels = hit.long()

    def __len__(self):
        return len(self.ids)

    def __getitem__(self, i):
        return {"input_ids": self.ids[i], "labels": self.labels[i]}


def hf_trainer(model, out, max_steps: int, **kw):
    args = transformers.TrainingArguments(
        output_dir=str(out), max_steps=max_steps, per_device_train_batch_size=16, learning_rate=1e-3,
        max_grad_norm=0.1, use_cpu=True, report_to=[], disable_tqdm=True, logging_strategy="no",
        save_strategy=kw.pop("save_strategy", "no"), seed=0, dataloader_num_workers=0, **kw)
    return transformers.Trainer(model=model, args=args, train_dataset=Tokens(320), eval_dataset=Tokens(64, seed=1))


@needs_transformers
def test_hf_sparse_training_keeps_masks_exact_and_a_checkpoint_resume_restores_them(tmp_path):
    from ticketlab.integrations import hf

    trainer = hf_trainer(tiny_bert(), tmp_path, 20, save_strategy="steps", save_steps=10)
    sparse = hf.sparsify(trainer, ticketlab.RigL(end_fraction=0.8, update_interval=4), 0.8)  # step 16
    trainer.train()  # gradients clipped at 0.1 by the Trainer before optimizer.step()
    u = sparse.updater
    assert u.step == 20 and len(u.history) == 5
    assert len(u.masks) == 13 and "classifier.weight" not in u.masks  # ERK leaves the 2×32 classifier dense
    assert sum(sum(r["grown"][n][0] for n in r["grown"]) for r in u.history) > 0
    inner = ticketlab.integrations.optim.innermost(trainer.optimizer)
    assert exact(trainer.model, u.masks, inner)

    ckpt = tmp_path / "checkpoint-10"
    saved = torch.load(ckpt / "optimizer.pt", weights_only=True)["ticketlab_sparse"]
    assert saved["step"] == 10

    class Check(transformers.TrainerCallback):
        def on_train_begin(self, args, state, control, **kwargs):
            self.masks = {n: m.clone() for n, m in sparse2.updater.masks.items()}
            self.step = sparse2.updater.step

    trainer2 = hf_trainer(tiny_bert(seed=1), tmp_path / "again", 20)
    sparse2, check = hf.sparsify(trainer2, ticketlab.RigL(end_step=16, update_interval=4), 0.8), Check()
    trainer2.add_callback(check)
    trainer2.train(resume_from_checkpoint=str(ckpt))
    assert check.step == 10 and all(torch.equal(check.masks[n], saved["masks"][n]) for n in saved["masks"])
    assert sparse2.updater.step == 20 and exact(trainer2.model, sparse2.updater.masks)


@needs_transformers
def test_hf_run_imp_rewinds_to_theta_k_bit_for_bit_and_resumes(tmp_path):
    from ticketlab.integrations import hf

    class Record(transformers.TrainerCallback):
        def __init__(self):
            self.at_k, self.starts = None, []

        def on_train_begin(self, args, state, control, model=None, **kwargs):
            self.starts.append(snapshot(model))

        def on_step_end(self, args, state, control, model=None, **kwargs):
            if state.global_step == 3 and self.at_k is None:
                self.at_k = snapshot(model)

    trainer, record = hf_trainer(tiny_bert(), tmp_path, 12, save_strategy="steps", save_steps=6), Record()
    trainer.add_callback(record)
    imp = ticketlab.IMP(prune_fraction=0.5, rewind_iter=3)
    rows = hf.run_imp(trainer, imp, levels=2)
    assert [r["level"] for r in rows] == [0, 1, 2] and "eval_loss" in rows[0]
    assert rows[0]["density"] == 1.0 > rows[1]["density"] > rows[2]["density"]
    level1 = imp.level  # the masks of level 2, and θk of level 0
    assert level1 == 2
    # level 1 started from θk under level 1's masks: read its masks from its checkpoint
    masks1 = torch.load(tmp_path / "level_1" / "checkpoint-6" / "optimizer.pt", weights_only=True)["ticketlab_masks"]
    for n, w in record.at_k.items():
        assert torch.equal(record.starts[1][n], w * masks1[n] if n in masks1 else w), n
    assert exact(trainer.model, imp.masks, ticketlab.integrations.optim.innermost(trainer.optimizer))

    # resume level 1 from its mid-level checkpoint in a fresh process-like setup
    trainer2 = hf_trainer(tiny_bert(seed=1), tmp_path / "again", 12)
    imp2 = ticketlab.IMP(prune_fraction=0.5, rewind_iter=3)
    ckpt = tmp_path / "level_1" / "checkpoint-6"

    class Check(transformers.TrainerCallback):
        masks = None

        def on_train_begin(self, args, state, control, **kwargs):
            if self.masks is None:
                self.masks = {n: m.clone() for n, m in imp2.masks.items()}

    check = Check()
    trainer2.add_callback(check)
    rows2 = hf.run_imp(trainer2, imp2, levels=2, resume_from_checkpoint=str(ckpt))
    assert [r["level"] for r in rows2] == [1, 2]
    assert all(torch.equal(check.masks[n], masks1[n]) for n in masks1)
    assert all(torch.equal(imp2.thetak[n], imp.thetak[n]) for n in imp.thetak)
    assert exact(trainer2.model, imp2.masks)


def with_grad_scaler(trainer, skip_at: int):
    """Give the Trainer a CPU GradScaler, and write inf into one gradient at global step `skip_at`.

    With `fp16=True` on a CPU, accelerate autocasts to float16 but makes no GradScaler (it makes one
    only for an accelerator); given one, accelerate's own `backward` (scale), `clip_grad_norm_`
    (unscale_), `AcceleratedOptimizer.step` (scaler.step, update, `step_was_skipped`) and the Trainer's
    skip handling run unchanged. The Trainer's default optimizer here is fused AdamW, which the scaler
    tells to skip (`found_inf`) rather than leaving it unstepped."""
    assert trainer.accelerator.mixed_precision == "fp16" and trainer.accelerator.scaler is None
    trainer.accelerator.scaler = scaler = torch.amp.GradScaler("cpu", init_scale=2.0 ** 8)
    trainer.accelerator.native_amp = True

    class Inf(transformers.TrainerCallback):
        before = after = None

        def on_step_begin(self, args, state, control, model=None, **kwargs):
            self.now = state.global_step
            if self.now == skip_at and self.before is None:
                self.before = snapshot(model)
                weight = dict(model.named_parameters())["classifier.bias"]
                weight.register_hook(lambda g: torch.full_like(g, float("inf")) if self.now == skip_at else None)

        def on_step_end(self, args, state, control, model=None, **kwargs):
            if self.before is not None and self.after is None:
                self.after = snapshot(model)

    inf = Inf()
    trainer.add_callback(inf)
    return scaler, inf


@needs_transformers
def test_hf_rigl_under_a_grad_scaler_that_skips_a_step_keeps_masks_and_schedule_exact(tmp_path):
    from ticketlab.integrations import hf

    trainer = hf_trainer(tiny_bert(), tmp_path, 13, fp16=True)
    scaler, inf = with_grad_scaler(trainer, skip_at=4)  # 4 would be an update step
    sparse = hf.sparsify(trainer, ticketlab.RigL(end_step=12, update_interval=4), 0.8)
    trainer.train()
    u = sparse.updater
    inner = ticketlab.integrations.optim.innermost(trainer.optimizer)
    assert inner.defaults.get("fused") and scaler.get_scale() < 2.0 ** 8
    assert all(torch.equal(inf.before[n], w) for n, w in inf.after.items())
    assert trainer.state.global_step == 13 and u.step == 12  # the skipped step is no step for RigL
    assert [r["step"] for r in u.history] == [0, 4, 8]
    assert exact(trainer.model, u.masks, inner)


@needs_transformers
def test_hf_run_imp_under_a_grad_scaler_rewinds_to_theta_k_of_the_steps_taken(tmp_path):
    """θk is the weights after k optimizer steps taken (the skipped one does not count); each level
    is one `train()`: the whole schedule again from θk, with a fresh optimizer."""
    from ticketlab.integrations import hf

    class Record(transformers.TrainerCallback):
        def __init__(self):
            self.at_k, self.starts, self.steps, self.lrs = None, [], [], []

        def on_train_begin(self, args, state, control, model=None, **kwargs):
            self.starts.append(snapshot(model))
            self.lrs.append(kwargs["lr_scheduler"].get_last_lr()[0])

        def on_step_end(self, args, state, control, model=None, **kwargs):
            if state.global_step == 4 and self.at_k is None:  # global step 4: 3 steps taken, one skipped
                self.at_k = snapshot(model)

        def on_train_end(self, args, state, control, **kwargs):
            self.steps.append(state.global_step)
            self.lrs.append(kwargs["lr_scheduler"].get_last_lr()[0])

    trainer, record = hf_trainer(tiny_bert(), tmp_path, 8, fp16=True), Record()
    scaler, _ = with_grad_scaler(trainer, skip_at=1)
    trainer.add_callback(record)
    imp = ticketlab.IMP(prune_fraction=0.5, rewind_iter=3)
    rows = hf.run_imp(trainer, imp, levels=1)
    assert scaler.get_scale() < 2.0 ** 8 and imp.steps == 3 and record.steps == [8, 8]
    assert record.lrs[0] == record.lrs[2] == 1e-3 and record.lrs[1] == record.lrs[3] < 1e-4  # the schedule restarts
    assert all(torch.equal(imp.thetak[n], w) for n, w in record.at_k.items())
    masks = imp.masks
    assert rows[1]["density"] < 1.0
    for n, w in record.at_k.items():  # level 1 started from θk, masked, bit for bit
        assert torch.equal(record.starts[1][n], w * masks[n] if n in masks else w), n
    assert exact(trainer.model, masks, ticketlab.integrations.optim.innermost(trainer.optimizer))


# ---- the examples -------------------------------------------------------------------------------

def run_example(name: str, monkeypatch, capsys) -> list[str]:
    """Run examples/`name` --tiny in this process (the frameworks are imported already: seconds saved)."""
    import runpy
    from pathlib import Path

    script = Path(__file__).resolve().parents[1] / "examples" / name
    monkeypatch.setattr("sys.argv", [str(script), "--tiny"])
    with torch.random.fork_rng(devices=[]):
        runpy.run_path(str(script), run_name="__main__")
    return capsys.readouterr().out.splitlines()


@needs_lightning
def test_the_lightning_example_runs_tiny(monkeypatch, capsys):
    lines = [line for line in run_example("byo_lightning.py", monkeypatch, capsys) if line.startswith("RigL")]
    assert len(lines) == 1 and "80.0% sparse" in lines[0] and "exact: True" in lines[0]


@needs_transformers
def test_the_hf_example_runs_tiny(monkeypatch, capsys):
    lines = [line for line in run_example("byo_hf.py", monkeypatch, capsys) if line.startswith("level ")]
    left = [float(line.split(":")[1].split("%")[0]) for line in lines]
    assert len(lines) == 3 and left[0] == 100.0 and left[0] > left[1] > left[2]
