"""The GPU benchmark of issue 16 ("Speed on every device"), in one process: writes
`benchmarks/gpu/results-<date>.md` (or `--out`) and prints the same table. Run it through `run.sh`.

1. correctness: the `gpu`-marked tests (run by run.sh, passed in with --tests-summary);
2. training steps/s of LeNet-300-100 at batch 60, Adam, masked (20 % of weights kept), R stacked
   models (`ticketlab.training.stacked`) against a plain one-model PyTorch loop on the same device;
3. the LTH §2 protocol (LeNet-300-100 on MNIST, 3 replicates, reinit and random-mask controls) timed
   at 2 levels (level 0: 3 runs; level 1: 9 runs) and projected to the levels that reach 2 %;
   one model at a time projected from stack-1 runs of the same level 1 at 1/10 and 1/20 of the length;
4. Conv-4 on Fashion-MNIST: one model at a time against 9 stacked through vmap
   (`ticketlab.training.stacked_conv`: 3 replicates with 2 controls), model-steps/s; and the
   calibration's own measurement and verdict for Conv-4 on this device (`ticketlab.engine.calibrate`:
   whether the commands stack it here);
5. sparse inference (`ticketlab.engine.export.sparse_from_dense`, CSR) against the dense model at
   90/95/98/99 % sparsity, batch 1 and 256;
6. precision: bf16 and tf32 against fp32 (`--precision`): stacked steps/s, and the test accuracy of
   the same LeNet-300-100 run in each;
7. the deterministic mode's cost (`--deterministic`): stacked steps/s with and without it, each in a
   fresh process (cuBLAS reads its workspace setting when CUDA starts);
8. CUDA graphs: `torch.compile(mode="reduce-overhead")` of the stacked forward and loss against eager,
   at a small and a larger stack; the table says whether it measured faster (the library adopts it
   only where it does: a decision left to these figures);
9. a sparse sweep on one recipe (RigL on LeNet-300-100 at 80/90/95/98 %, 3 replicates each): its 12
   runs in one stack (`sparse_training.run_points`) against one stack per point (3 runs each), wall time.

Every figure is from this run, on this device: compare only within one results file.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from ticketlab import api
from ticketlab.core.masks import MaskEnforcer
from ticketlab.data import load_dataset
from ticketlab.engine import calibrate
from ticketlab.engine.export import sparse_from_dense
from ticketlab.engine.options import RunOptions
from ticketlab.experiments import sparse_training
from ticketlab.experiments.lottery.trunk import LotteryConfig, n_levels
from ticketlab.models import create_model, output_layer_name, prunable_parameters
from ticketlab.training import determinism, device as D, precision as P, timing
from ticketlab.training.loop import Batches, TrainConfig, batch_indices, make_optimizer
from ticketlab.training.stacked import Stacked
from ticketlab.training.stacked_conv import VmapStacked


def sync(dev):
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)


def lenet(seed):
    return create_model("lenet300_100", input_shape=(1, 28, 28), num_classes=10, seed=seed)


def random_masks(model, seed, density=0.2):
    g = torch.Generator().manual_seed(seed)
    return {n: torch.rand(p.shape, generator=g) < density for n, p in prunable_parameters(model).items()}


def steps_ticketlab(R, x, y, dev, steps, warmup, *, compiled=False):
    """Model-steps/s of R stacked masked LeNet-300-100 through the library's hot-loop pieces, in this
    process's precision (`ticketlab.training.precision`); `compiled`: the forward and loss through
    `torch.compile(mode="reduce-overhead")` (CUDA graphs on CUDA)."""
    cfg = TrainConfig(dataset="mnist", model="lenet300_100", batch_size=60)
    models = [lenet(s) for s in range(R)]
    ens = Stacked(models)
    ens.module.to(dev)
    opt = make_optimizer(cfg, ens.module.parameters())
    enf = MaskEnforcer(ens.prunable(), ens.stack_masks([random_masks(m, s) for s, m in enumerate(models)]))
    enf.install(opt)
    on = None if dev.type == "cpu" else dev
    n = len(x)
    loss = lambda xb, yb: ens.losses(xb, yb).sum()  # noqa: E731
    if compiled:
        loss = torch.compile(loss, mode="reduce-overhead")
    autocast = P.autocast(dev)
    batches = Batches(n, 60, range(R), on)

    def step(it):
        opt.zero_grad(set_to_none=True)
        idx = batches(it)
        with autocast:
            out = loss(x[idx], y[idx])
        out.backward()
        enf.after_backward(it)
        opt.step()
        enf.after_step(it)

    for it in range(warmup):
        step(it)
    sync(dev)
    t = time.perf_counter()
    for it in range(warmup, warmup + steps):
        step(it)
    sync(dev)
    return R * steps / (time.perf_counter() - t)


def steps_plain(x, y, dev, steps, warmup):
    """Steps/s of the way open_lth and every peer trains: one masked model, a plain PyTorch loop."""
    model = lenet(0).to(dev)
    masks = {n: m.to(dev).float() for n, m in random_masks(model, 0).items()}
    params = dict(model.named_parameters())
    opt = torch.optim.Adam(model.parameters(), lr=1.2e-3)
    g = torch.Generator().manual_seed(0)
    n = len(x)

    def step():
        idx = torch.randint(n, (60,), generator=g).to(dev)
        opt.zero_grad(set_to_none=True)
        F.cross_entropy(model(x[idx]), y[idx]).backward()
        with torch.no_grad():
            for k, m in masks.items():
                params[k].grad.mul_(m)
        opt.step()
        with torch.no_grad():
            for k, m in masks.items():
                params[k].mul_(m)

    for _ in range(warmup):
        step()
    sync(dev)
    t = time.perf_counter()
    for _ in range(steps):
        step()
    sync(dev)
    return steps / (time.perf_counter() - t)


def conv_steps(x, y, dev, steps, warmup):
    model = create_model("conv4", input_shape=(1, 28, 28), num_classes=10, seed=0).to(dev)
    opt = torch.optim.Adam(model.parameters(), lr=3e-4)
    n = len(x)
    for i in range(warmup + steps):
        if i == warmup:
            sync(dev)
            t = time.perf_counter()
        idx = batch_indices(n, 60, 0, i, None if dev.type == "cpu" else dev)
        opt.zero_grad(set_to_none=True)
        F.cross_entropy(model(x[idx]), y[idx]).backward()
        opt.step()
    sync(dev)
    return steps / (time.perf_counter() - t)


def conv_steps_stacked(R, x, y, dev, steps, warmup):
    """Model-steps/s of R Conv-4 stacked through vmap (`VmapStacked`), each on its own batch."""
    models = [create_model("conv4", input_shape=(1, 28, 28), num_classes=10, seed=s) for s in range(R)]
    ens = VmapStacked(models)
    ens.module.to(dev)
    opt = torch.optim.Adam(ens.module.parameters(), lr=3e-4)
    batches = Batches(len(x), 60, range(R), None if dev.type == "cpu" else dev)
    for i in range(warmup + steps):
        if i == warmup:
            sync(dev)
            t = time.perf_counter()
        idx = batches(i)
        opt.zero_grad(set_to_none=True)
        ens.losses(x[idx], y[idx]).sum().backward()
        opt.step()
    sync(dev)
    return R * steps / (time.perf_counter() - t)


def lth(data_dir, dev, iterations, eval_every, store):
    """(level-0 s, level-1 s, one-at-a-time level-1 s, levels to 2 %) of the LTH §2 protocol."""
    train = TrainConfig(dataset="mnist", model="lenet300_100", iterations=iterations, batch_size=60,
                        eval_every=eval_every)
    opts = RunOptions(device=str(dev), workers=1, stack=16, progress=False)
    t = []
    for levels in (0, 1):
        cfg = LotteryConfig(levels=levels, replicates=3, controls=("reinit", "random_mask"))
        t0 = time.perf_counter()
        api.lottery(train, cfg, store=store / "stacked", data_dir=data_dir, options=opts)
        t.append(time.perf_counter() - t0)
    # One at a time: level 1 with stack 1 at 1/10 and 1/20 of the length. Their difference is the
    # cost of the iterations alone (start-up and pruning cancel), so the projection to the full length
    # is slope × iterations + the start-up once.
    spent = {}
    for frac in (10, 20):
        n = max(2, iterations // frac)
        short = dataclasses.replace(train, iterations=n, eval_every=min(eval_every, n))
        alone = RunOptions(device=str(dev), workers=1, stack=1, progress=False)
        api.lottery(short, LotteryConfig(levels=0, replicates=3), store=store / f"alone{frac}", data_dir=data_dir,
                    options=alone)
        t0 = time.perf_counter()
        api.lottery(short, LotteryConfig(levels=1, replicates=3, controls=("reinit", "random_mask")),
                    store=store / f"alone{frac}", data_dir=data_dir, options=alone)
        spent[n] = time.perf_counter() - t0
    (n_long, t_long), (n_short, t_short) = sorted(spent.items(), reverse=True)
    slope = max(0.0, (t_long - t_short) / max(1, n_long - n_short))
    alone = slope * iterations + max(0.0, t_short - slope * n_short)
    m = lenet(0)
    levels = n_levels(LotteryConfig(target_sparsity=0.98), prunable_parameters(m), output_layer_name(m))
    return t[0], t[1], alone, levels


def precision_runs(data_dir, dev, iterations, store):
    """{precision: (final test accuracy, wall s)} of one LeNet-300-100 run on MNIST in each precision."""
    train = TrainConfig(dataset="mnist", model="lenet300_100", iterations=iterations, batch_size=60,
                        eval_every=max(1, iterations // 4))
    out = {}
    for prec in P.NAMES:
        s = api.train(train, store=store, data_dir=data_dir,
                      options=RunOptions(device=str(dev), precision=prec, progress=False))
        out[prec] = (s["final"]["test_acc"], timing.read(s)["stack_wall_time_s"])
    P.use("fp32")
    return out


def probe(a, dev):
    """`--probe`: stacked steps/s in a fresh process, with or without the deterministic mode."""
    determinism.use(a.probe == "deterministic")  # before CUDA starts, as the library does
    mnist = load_dataset("mnist", a.data_dir)
    x, y = D.to_device(mnist.train.x, dev), D.to_device(mnist.train.y, dev)
    print(json.dumps({"steps_s": steps_ticketlab(a.probe_stack, x, y, dev, a.probe_steps, a.probe_steps // 10 + 1)}))


def probe_in_process(a, mode, R, steps):
    cmd = [sys.executable, __file__, "--data-dir", a.data_dir, "--device", a.device, "--probe", mode,
           "--probe-stack", str(R), "--probe-steps", str(steps)]
    env = {k: v for k, v in os.environ.items() if k != determinism.CUBLAS[0]}
    out = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    if out.returncode:
        return None, out.stderr.strip().splitlines()[-1] if out.stderr.strip() else f"exit {out.returncode}"
    return json.loads(out.stdout.strip().splitlines()[-1])["steps_s"], ""


@torch.inference_mode()
def inference(dev, reps):
    rows = []
    model = lenet(0).to(dev).eval()
    for batch in (1, 256):
        x = torch.randn(batch, 1, 28, 28, device=dev)

        def timed(f):
            for _ in range(max(3, reps // 10)):
                f(x)
            sync(dev)
            t = time.perf_counter()
            for _ in range(reps):
                f(x)
            sync(dev)
            return (time.perf_counter() - t) / reps * 1e6

        dense = timed(model)
        for sparsity in (0.90, 0.95, 0.98, 0.99):
            masks = random_masks(model, 1, 1 - sparsity)
            sparse = sparse_from_dense(model.cpu(), masks).to(dev)
            model.to(dev)
            us = timed(sparse)
            rows.append((batch, sparsity, dense, us))
    return rows


def sparse_sweep(data, iterations, store):
    """(s for the points' runs in one stack, s for one stack per point) of RigL at 4 sparsities × 3
    replicates, on the process's device, with the dataset already loaded."""
    train = TrainConfig(dataset="mnist", model="lenet300_100", iterations=iterations, batch_size=60,
                        eval_every=max(1, iterations // 2))
    points = [sparse_training.SparseConfig(method="rigl", sparsity=s, update_interval=max(1, iterations // 10))
              for s in (0.8, 0.9, 0.95, 0.98)]
    sparse_training.run(train, points[0], store=store / "warm", data=data, progress=False, replicates=3,
                        stack=3)  # CUDA and the code paths warm before either is timed
    t0 = time.perf_counter()
    sparse_training.run_points(train, points, store=store / "together", data=data, progress=False,
                               replicates=3, stack=12)
    together = time.perf_counter() - t0
    t0 = time.perf_counter()
    for point in points:
        sparse_training.run(train, point, store=store / "apart", data=data, progress=False, replicates=3, stack=3)
    return together, time.perf_counter() - t0


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="auto")
    p.add_argument("--data-dir", required=True)
    p.add_argument("--quick", action="store_true", help="reduced sizes (a CPU check of the script)")
    p.add_argument("--out", default=None)
    p.add_argument("--lth-iterations", type=int, default=None, help="LTH iterations per level (default 50,000)")
    p.add_argument("--tests-summary", default="", help="the last line of the gpu-marked tests' run")
    p.add_argument("--probe", choices=("default", "deterministic"), default=None, help=argparse.SUPPRESS)
    p.add_argument("--probe-stack", type=int, default=8, help=argparse.SUPPRESS)
    p.add_argument("--probe-steps", type=int, default=100, help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    dev = D.resolve(D.check(a.device))
    D.use(str(dev))
    if dev.type == "cpu":
        torch.set_num_threads(1)
    if a.probe:
        return probe(a, dev)
    quick = a.quick
    Rs = (1, 8) if quick else (1, 8, 32, 128, 512)
    steps, warmup = (20, 3) if quick else (300, 30)
    lth_iters = a.lth_iterations or (40 if quick else 50_000)
    lth_eval = 20 if quick else 100  # LTH evaluates every 100 iterations
    name = torch.cuda.get_device_name(dev) if dev.type == "cuda" else f"CPU {platform.processor()}".strip()
    lines = [f"# ticketlab GPU benchmark, {datetime.date.today()}", "",
             f"device: {name} ({dev}); torch {torch.__version__}; python {platform.python_version()}"
             + ("; --quick (reduced sizes: not the benchmark's figures)" if quick else ""), ""]

    out = Path(a.out) if a.out else Path(__file__).parent / f"results-{datetime.date.today()}.md"

    def emit(*ls):
        for line in ls:
            print(line, flush=True)
            lines.append(line)
        # written as it goes: a run stopped at run.sh's time limit keeps the sections it finished
        out.write_text("\n".join(lines + ["", "(incomplete: the run stopped here)"]) + "\n")

    emit("## 1. Correctness", "", f"gpu-marked tests: {a.tests_summary or 'not run'}", "")

    mnist = load_dataset("mnist", a.data_dir)
    x, y = D.to_device(mnist.train.x, dev), D.to_device(mnist.train.y, dev)
    emit("## 2. Training steps/s, LeNet-300-100, batch 60, Adam, masked", "",
         "| models | plain loop (steps/s) | ticketlab stacked (model-steps/s) | × plain |", "|---|---|---|---|")
    plain = steps_plain(x, y, dev, steps, warmup)
    best = 0.0
    for R in Rs:
        s = steps_ticketlab(R, x, y, dev, max(5, steps // max(1, R // 32)), warmup)
        best = max(best, s / plain)
        emit(f"| {R} | {plain:,.0f} | {s:,.0f} | {s / plain:.1f} |")
    emit("", f"goal ≥ 10× one-model-at-a-time throughput: best {best:.1f}×, "
         f"{'met' if best >= 10 else 'missed'}{' (--quick: sizes too small to judge)' if quick else ''}", "")

    with tempfile.TemporaryDirectory() as tmp:
        t0, t1, alone1, levels = lth(a.data_dir, dev, lth_iters, min(lth_eval, lth_iters), Path(tmp))
    total = t0 + levels * t1
    total_alone = (3 / 9 + levels) * alone1  # level 0 alone: 3 of level 1's 9 runs
    emit(f"## 3. LTH §2 protocol, LeNet-300-100 on MNIST, {lth_iters:,} iterations per level", "",
         "| | measured | projected, level 0 + %d levels (to 2 %%) |" % levels, "|---|---|---|",
         f"| stacked (stack 16): level 0 (3 runs) | {t0:.1f} s | |",
         f"| stacked: level 1 (9 runs) | {t1:.1f} s | {total / 60:.1f} min |",
         f"| one at a time: level 1 (from runs of 1/10 and 1/20 of the length) | {alone1:.1f} s | {total_alone / 60:.1f} min |", "",
         f"goal: the whole protocol projected at ≤ 15 min: {total / 60:.1f} min, "
         f"{'met' if total <= 15 * 60 else 'missed'}{' (--quick: not the protocol length)' if quick or lth_iters != 50_000 else ''}; "
         f"one model at a time takes {total_alone / max(total, 1e-9):.1f}× as long", "")

    fm = load_dataset("fashion-mnist", a.data_dir)
    fx, fy = D.to_device(fm.train.x, dev), D.to_device(fm.train.y, dev)
    c = conv_steps(fx, fy, dev, 5 if quick else steps, 1 if quick else warmup)
    cs = conv_steps_stacked(9, fx, fy, dev, 3 if quick else steps // 3, 1 if quick else warmup)
    emit("## 4. Conv-4 on Fashion-MNIST, batch 60, Adam", "",
         "| | model-steps/s | × one at a time |", "|---|---|---|",
         f"| one model at a time | {c:,.1f} | 1.00 |",
         f"| 9 stacked through vmap (3 replicates × ticket + 2 controls) | {cs:,.1f} | {cs / c:.2f} |", "")
    conv4 = lambda seed: create_model("conv4", input_shape=(1, 28, 28), num_classes=10, seed=seed)  # noqa: E731
    if dev.type == "cpu" and not quick:
        emit("calibration: conv nets do not stack on the CPU (`stacked_conv.family`)", "")
    else:  # on the CPU (--quick) the vmapped stack is forced, to check this code path
        if quick:
            calibrate.STEPS, calibrate.WARMUP, calibrate.ROUNDS = 3, 1, 1
        stk, one = calibrate.measure(conv4, (1, 28, 28), str(dev), TrainConfig(optimizer="adam", batch_size=60),
                                     ensemble=VmapStacked)
        emit(f"calibration (the real loop, {calibrate.MODELS} models): stacked {1000 * stk:.3f} ms against "
             f"{1000 * one:.3f} ms per model-step, {stk / one:.2f} of one at a time: the commands "
             f"{'stack' if stk <= calibrate.MARGIN * one else 'do not stack'} Conv-4 here "
             f"(they stack at ≤ {calibrate.MARGIN})", "")

    emit("## 5. Sparse inference, LeNet-300-100 (CSR, ticketlab.engine.export)", "",
         "| batch | sparsity | dense (µs) | sparse (µs) | × dense |", "|---|---|---|---|---|")
    for batch, sp, d_us, s_us in inference(dev, 50 if quick else 500):
        emit(f"| {batch} | {sp:.0%} | {d_us:.1f} | {s_us:.1f} | {d_us / s_us:.2f} |")
    emit("")

    # 6. precision
    R_mid = Rs[-1] if quick else 32
    emit("## 6. Precision (`--precision`)", "",
         f"| precision | stacked model-steps/s (R = {R_mid}) | × fp32 | LeNet-300-100, {prec_iters(quick):,} "
         "iterations: final test acc | its wall s |", "|---|---|---|---|---|")
    speed = {}
    for prec in P.NAMES:
        P.use(prec)
        speed[prec] = steps_ticketlab(R_mid, x, y, dev, steps, warmup)
    P.use("fp32")
    with tempfile.TemporaryDirectory() as tmp:
        accs = precision_runs(a.data_dir, dev, prec_iters(quick), Path(tmp))
    for prec in P.NAMES:
        acc, wall = accs[prec]
        emit(f"| {prec} | {speed[prec]:,.0f} | {speed[prec] / speed['fp32']:.2f} | {acc:.4f} "
             f"({acc - accs['fp32'][0]:+.4f}) | {wall:.1f} |")
    emit("", "tf32 changes nothing on a CPU (the flags are read by CUDA kernels only).", "")

    # 7. deterministic mode
    emit("## 7. Deterministic mode (`--deterministic`), each in a fresh process", "",
         f"| mode | stacked model-steps/s (R = {R_mid}) | × default |", "|---|---|---|")
    got = {m: probe_in_process(a, m, R_mid, steps) for m in ("default", "deterministic")}
    base = got["default"][0]
    for m, (v, err) in got.items():
        emit(f"| {m} | {v:,.0f} | {v / base:.2f} |" if v and base else f"| {m} | failed: {err} | |")
    emit("")

    # 8. CUDA graphs through torch.compile(mode="reduce-overhead")
    emit("## 8. CUDA graphs: `torch.compile(mode=\"reduce-overhead\")` of the stacked forward + loss", "",
         "| models | eager (model-steps/s) | compiled (model-steps/s) | × eager | faster? |", "|---|---|---|---|---|")
    for R in ((1, 8) if quick else (8, 128)):
        eager = steps_ticketlab(R, x, y, dev, steps, warmup)
        try:
            comp = steps_ticketlab(R, x, y, dev, steps, max(warmup, 3), compiled=True)
        except Exception as e:  # a compiler missing on this machine: say so, measure the rest
            emit(f"| {R} | {eager:,.0f} | failed: {type(e).__name__}: {str(e).splitlines()[0][:80]} | | |")
            continue
        emit(f"| {R} | {eager:,.0f} | {comp:,.0f} | {comp / eager:.2f} | {'yes' if comp > 1.05 * eager else 'no'} |")
    emit("", "On a CPU there are no CUDA graphs: this row measures the compiler alone.", "")

    # 9. the points of a sparse sweep in one stack
    sweep_iters = 40 if quick else 1000
    with tempfile.TemporaryDirectory() as tmp:
        together, apart = sparse_sweep(mnist, sweep_iters, Path(tmp))
    emit(f"## 9. A sparse sweep on one recipe: RigL, LeNet-300-100, 80/90/95/98 % × 3 replicates, "
         f"{sweep_iters:,} iterations", "",
         "| | wall s | × one stack per point |", "|---|---|---|",
         f"| one stack per point (4 stacks of 3) | {apart:.1f} | 1.00 |",
         f"| the points in one stack (12 runs) | {together:.1f} | {apart / max(together, 1e-9):.2f} |", "")

    out.write_text("\n".join(lines) + "\n")
    print(f"wrote {out}")


def prec_iters(quick):
    return 40 if quick else 5000


if __name__ == "__main__":
    main()
