"""Every domain on the process's device (issue 16): teacher–student, LM, saliency scoring, instability,
transfer and RL, each run on the CPU through the same device plumbing (`device="cpu"` given
explicitly) and, marked `gpu`, on CUDA (skipped with the reason where CUDA is absent). State files
hold CPU tensors wherever a run trained; precision that a domain cannot honour is a one-line error."""

import dataclasses
import json

import pytest
import torch
from test_nlp import TINY_LM, tiny_ptb  # noqa: F401  (a fixture)

from ticketlab import api
from ticketlab.core.errors import ConfigError
from ticketlab.engine.options import RunOptions
from ticketlab.experiments.lottery.trunk import LotteryConfig
from ticketlab.experiments.teacher_student.experiment import TeacherStudentConfig
from ticketlab.experiments.transfer import TransferConfig
from ticketlab.methods import saliency
from ticketlab.models import create_model, prunable_parameters
from ticketlab.training import device as D, precision as P
from ticketlab.training.loop import TrainConfig, load_state

torch.set_num_threads(1)

from gpu_marks import gpu, needs_cuda
ON = ["cpu", pytest.param("cuda", marks=[gpu, needs_cuda])]

TS = dict(input_dim=12, teacher_widths=(4,), output_dim=6, steps=200, log_every=100, seeds=2, train_size=500,
          eval_size=600, batch_size=8, lr=0.02, multi=2)
TRAIN = TrainConfig(dataset="mnist1d", model="mlp", model_args={"widths": [32]}, iterations=60, batch_size=50,
                    eval_every=30)


@pytest.fixture(autouse=True)
def _restore_settings():
    before = D.current(), P.current()
    yield
    D.use(before[0])
    P.use(before[1])


def _all_cpu(obj) -> bool:
    if torch.is_tensor(obj):
        return obj.device.type == "cpu"
    if isinstance(obj, dict):
        return all(_all_cpu(v) for v in obj.values())
    if isinstance(obj, (list, tuple)):
        return all(_all_cpu(v) for v in obj)
    return True


# ---- teacher–student ---------------------------------------------------------------------------

@pytest.mark.parametrize("where", ON)
def test_teacher_student_on_a_device_matches_the_cpu(tmp_path, where):
    cfg = TeacherStudentConfig(**TS)
    ref = api.teacher_student(cfg, store=tmp_path / "ref", options=RunOptions(device="cpu", progress=False))
    got = api.teacher_student(cfg, store=tmp_path / where, options=RunOptions(device=where, progress=False))
    exp = got["experiments"][0]
    s = json.loads(open(f"{exp}/seed_0/summary.json").read())
    assert s["trained_on"].startswith(where) and s["precision"] == "fp32"
    assert _all_cpu(load_state(f"{exp}/seed_0/final.pt")) and _all_cpu(torch.load(f"{exp}/seed_0/corr.pt"))
    a = load_state(f"{ref['experiments'][0]}/seed_1/final.pt")["student"]["weights"]
    b = load_state(f"{exp}/seed_1/final.pt")["student"]["weights"]
    tol = 0.0 if where == "cpu" else 1e-3  # the CPU: the same computation, bit for bit
    assert all(torch.allclose(u, v, atol=tol, rtol=0) for u, v in zip(a, b))


def test_teacher_student_trains_in_bf16_in_its_own_folder(tmp_path):
    cfg = TeacherStudentConfig(**TS)
    a = api.teacher_student(cfg, store=tmp_path, options=RunOptions(device="cpu", progress=False))
    b = api.teacher_student(cfg, store=tmp_path, options=RunOptions(device="cpu", progress=False, precision="bf16"))
    ea, eb = a["experiments"][0], b["experiments"][0]
    assert ea != eb and json.loads(open(f"{eb}/seed_0/summary.json").read())["precision"] == "bf16"
    wa = load_state(f"{ea}/seed_0/final.pt")["student"]["weights"]
    wb = load_state(f"{eb}/seed_0/final.pt")["student"]["weights"]
    assert all(w.dtype == torch.float32 for w in wb) and any(not torch.equal(u, v) for u, v in zip(wa, wb))


# ---- language models ---------------------------------------------------------------------------

@pytest.mark.parametrize("where", ON)
@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_an_lm_trains_on_the_device_with_exact_masks(tiny_ptb, tmp_path, where, precision):  # noqa: F811
    from ticketlab.domains.nlp.lm_task import LMTrainer
    D.use(where)
    P.use(precision)
    cfg = dataclasses.replace(TINY_LM, model="transformer", hidden=16, heads=2, ffn=32, n_layers=1, lr=1e-2,
                              warmup=5, epochs=1.0, eval_every=1000, prune_embeddings=True)
    t = LMTrainer(cfg, data_dir=tiny_ptb)
    m = t.build(0)
    g = torch.Generator().manual_seed(1)
    masks = {n: torch.rand(p.shape, generator=g) < 0.5 for n, p in t.prunable(m).items()}
    s = t.fit(m, tmp_path / "run", masks=masks)
    assert s["trained_on"].startswith(where) and s["precision"] == precision
    assert next(m.parameters()).device.type == "cpu"  # the caller's model comes back to its device
    final = load_state(tmp_path / "run" / "final.pt")
    assert _all_cpu(final) and all(torch.count_nonzero(final["model"][n][~mk]) == 0 for n, mk in masks.items())


# ---- saliency scoring ----------------------------------------------------------------------------

def test_saliency_scores_are_computed_where_the_model_lives():
    # the meta device stands for any other device: the batch and every tensor follow the parameters
    m = create_model("mlp", input_shape=(40,), num_classes=10, seed=0, widths=[16]).to("meta")
    x, y = torch.randn(8, 40), torch.randint(0, 10, (8,))
    for scores in (saliency.snip(m, x, y), saliency.grasp(m, x, y), saliency.synflow(m, (40,))):
        assert set(scores) == set(prunable_parameters(m)) and all(s.device.type == "meta" for s in scores.values())


@pytest.mark.parametrize("where", ON)
def test_snip_masks_on_a_device_equal_the_cpus(tmp_path, where):
    from ticketlab.experiments.sparse_training import SparseConfig
    cfg = SparseConfig(method="snip", sparsity=0.8)
    runs = {d: api.sparse_train(TRAIN, cfg, store=tmp_path / d, options=RunOptions(device=d, progress=False))
            for d in ("cpu", where)}
    mk = {d: load_state(f"{r['experiment']}/replicate_0/final.pt")["masks"] for d, r in runs.items()}
    same = sum(int((mk["cpu"][n] == mk[where][n]).sum()) for n in mk["cpu"])
    total = sum(v.numel() for v in mk["cpu"].values())
    assert same >= (1.0 if where == "cpu" else 0.99) * total  # CUDA: rounding may swap a few near-ties


# ---- instability, transfer -------------------------------------------------------------------

@pytest.fixture(scope="module")
def lottery(tmp_path_factory):
    store = tmp_path_factory.mktemp("store")
    res = api.lottery(TRAIN, LotteryConfig(levels=1, rewind_iter=30), store=store,
                      options=RunOptions(device="cpu", progress=False))
    return store, res["experiment"]


@pytest.mark.parametrize("where", ON)
def test_instability_on_a_device(lottery, where):
    store, exp = lottery
    rows = api.instability(exp, level=1, rewind_iters=[30], store=store, progress=False,
                           options=RunOptions(device=where))
    assert 0.0 <= rows[0]["endpoint_errors"][0] <= 1.0 and len(rows[0]["errors"]) == 11
    copy = json.loads(open(f"{exp}/{rows[0]['copies'][0]['run']}/summary.json").read())
    assert copy["trained_on"].startswith(where)


def test_instability_refuses_another_precision_than_its_lotterys(lottery):
    store, exp = lottery
    with pytest.raises(ConfigError, match=r"^precision: got 'bf16', but .* was trained in 'fp32'"):
        api.instability(exp, level=1, rewind_iters=[0], store=store, progress=False,
                        options=RunOptions(precision="bf16"))


@pytest.mark.parametrize("where", ON)
def test_transfer_on_a_device(lottery, where):
    store, exp = lottery
    cfg = TransferConfig(source=exp, target={"optimizer": "sgd", "lr": 0.05}, levels=(1,), replicates=1,
                         controls=())
    res = api.transfer(cfg, store=store, options=RunOptions(device=where, progress=False, stack=1))
    runs = [r for r in res["rows"]]
    s = json.loads(open(f"{runs[0]['path']}/summary.json").read())
    assert s["trained_on"].startswith(where) and _all_cpu(load_state(f"{runs[0]['path']}/final.pt"))


# ---- RL ----------------------------------------------------------------------------------------

def test_rl_refuses_bf16_before_making_a_folder(tmp_path):
    from ticketlab.domains.rl import RLConfig
    cfg = RLConfig(env="CartPole-v1", algo="ppo", env_steps=256, n_envs=2, n_steps=32, batch_size=32)
    with pytest.raises(ConfigError, match="^precision: got 'bf16', but RL agents"):
        api.lottery(cfg, LotteryConfig(levels=1), store=tmp_path, options=RunOptions(precision="bf16"))
    assert not list(tmp_path.glob("*"))
