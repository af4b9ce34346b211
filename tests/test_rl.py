"""Lottery tickets in RL (ticketlab.domains.rl): exact masks through SB3's updates (PPO and DQN, target
network included), bit-exact rewinding and resume, a 2-level CartPole lottery end to end through
the API and the CLI, config errors, and the Atari frame resize. Tiny budgets (a few hundred env steps)."""

import json

import numpy as np
import pytest
import torch

from ticketlab import api
from ticketlab.core import masks as M
from ticketlab.cli.commands import main
from ticketlab.core.errors import ConfigError
from ticketlab.experiments.lottery.trunk import LotteryConfig
from ticketlab.domains.rl import RLConfig
from ticketlab.domains.rl.envs import AreaResize
from ticketlab.domains.rl.task import make_trainer, validate
from ticketlab.training.loop import load_state
from ticketlab.training.rundir import RunDir

torch.set_num_threads(1)

# rollout = 4 envs × 32 steps = 128 env steps; evaluation capped at 50 steps per episode
PPO = RLConfig(env="CartPole-v1", algo="ppo", env_steps=512, n_envs=4, n_steps=32, batch_size=64, n_epochs=2,
               eval_every=256, eval_episodes=2, val_episodes=2, eval_max_steps=50)
# rollout = 1 env × 32 steps; 64 random steps, then 8 gradient steps per rollout
DQN = RLConfig(env="CartPole-v1", algo="dqn", env_steps=384, net_arch=(32, 32), buffer_size=1000, learning_starts=64,
               train_freq=32, gradient_steps=8, batch_size=32, target_update_interval=64, eval_every=128,
               eval_episodes=2, val_episodes=2, eval_max_steps=50)
A2C = RLConfig(env="Acrobot-v1", algo="a2c", env_steps=256, n_envs=4, n_steps=8, eval_every=128, eval_episodes=1,
               val_episodes=1, eval_max_steps=50)


def random_masks(params, density=0.4, seed=0):
    g = torch.Generator().manual_seed(seed)
    return {n: torch.rand(p.shape, generator=g) < density for n, p in params.items()}


def fit(cfg, run_dir, model=None, **kw):
    tr = make_trainer(cfg, checkpoint_every=kw.pop("checkpoint_every", 10_000))
    return tr.fit(tr.build(cfg.init_seed) if model is None else model, run_dir, **kw)


def test_prunable_sets_and_keep_dense():
    tr = make_trainer(PPO)
    names = set(tr.prunable(tr.build(0)))
    assert names == {"mlp_extractor.policy_net.0.weight", "mlp_extractor.policy_net.2.weight", "action_net.weight",
                     "mlp_extractor.value_net.0.weight", "mlp_extractor.value_net.2.weight", "value_net.weight"}
    assert tr.output_layer(tr.build(0)) == "action_net.weight"
    tr = make_trainer(RLConfig(keep_dense="value_head"))
    assert "value_net.weight" not in tr.prunable(tr.build(0))
    tr = make_trainer(RLConfig(keep_dense="critic"))
    assert not any("value" in n for n in tr.prunable(tr.build(0)))
    tr = make_trainer(DQN)
    q = tr.build(0)
    assert set(tr.prunable(q)) == {"q_net.q_net.0.weight", "q_net.q_net.2.weight", "q_net.q_net.4.weight"}
    assert tr.output_layer(q) == "q_net.q_net.4.weight"
    # same seed, same agent; another seed, another agent
    a, b, c = (make_trainer(PPO).build(s).state_dict() for s in (3, 3, 4))
    assert all(torch.equal(a[k], b[k]) for k in a) and not torch.equal(a["action_net.weight"], c["action_net.weight"])


@pytest.mark.parametrize("cfg", [PPO, DQN, A2C], ids=["ppo", "dqn", "a2c"])
def test_masks_stay_exact_through_agent_updates(tmp_path, cfg):
    tr = make_trainer(cfg)
    model = tr.build(0)
    start = {k: v.clone() for k, v in model.state_dict().items()}
    masks = random_masks(tr.prunable(model))
    # start from a dense optimizer state, whose pruned entries must be zeroed at install
    fit(cfg, tmp_path / "dense", snapshot_iters=(cfg.eval_every,))
    opt = load_state(tmp_path / "dense" / f"snapshot_{cfg.eval_every}.pt")["optimizer"]
    M.apply_masks(tr.prunable(model), masks)
    s = fit(cfg, tmp_path / "masked", model, masks=masks, start_iter=cfg.eval_every, start_optimizer=opt)
    assert s["metric"] == "eval_return" and s["final"]["iter"] == cfg.env_steps
    final = load_state(tmp_path / "masked" / "final.pt")
    w, state = final["model"], final["optimizer"]["state"]
    order = [n for n, _ in tr.build(0).named_parameters()]
    for n, m in masks.items():
        assert torch.count_nonzero(w[n][~m]) == 0, n
        assert not torch.equal(w[n][m], start[n][m]), f"{n}: survivors did not train"
        moments = [v for v in state[order.index(n)].values() if torch.is_tensor(v) and v.shape == m.shape]
        assert moments, f"{n}: no optimizer state to check"
        for v in moments:
            assert torch.count_nonzero(v[~m]) == 0, (n, "optimizer state")
        if cfg.algo == "dqn":  # the target network follows the online network's mask
            t = w[n.replace("q_net.", "q_net_target.", 1)]
            assert torch.count_nonzero(t[~m]) == 0, n
            assert torch.count_nonzero(t[m]) > 0


def test_rewinding_restores_the_agent_bit_for_bit(tmp_path):
    """Rewinding to θk with the optimizer state and a dense mask repeats level 0 from k exactly
    (the segment rule: training from a boundary is a function of the agent's state alone)."""
    k = 256
    fit(PPO, tmp_path / "level0", snapshot_iters=(0, k))
    snap = load_state(tmp_path / "level0" / f"snapshot_{k}.pt")
    tr = make_trainer(PPO)
    model = tr.build(123)  # another init: every weight comes from the snapshot
    model.load_state_dict(snap["model"])
    ones = M.ones_masks(tr.prunable(model))
    fit(PPO, tmp_path / "rewound", model, masks=ones, start_iter=k, start_optimizer=snap["optimizer"],
        snapshot_iters=(k,))
    again = load_state(tmp_path / "rewound" / f"snapshot_{k}.pt")
    assert all(torch.equal(again["model"][n], snap["model"][n]) for n in snap["model"])
    a, b = load_state(tmp_path / "level0" / "final.pt"), load_state(tmp_path / "rewound" / "final.pt")
    assert all(torch.equal(a["model"][n], b["model"][n]) for n in a["model"])
    rows = lambda d: [json.loads(x) for x in (tmp_path / d / "metrics.jsonl").read_text().splitlines()]
    assert rows("level0")[-1] == rows("rewound")[-1]  # (the row at k differs: no training episodes yet)


@pytest.mark.parametrize("cfg", [PPO, DQN], ids=["ppo", "dqn"])
def test_interrupted_run_resumes_exactly(tmp_path, monkeypatch, cfg):
    tr = make_trainer(cfg)
    masks = random_masks(tr.prunable(tr.build(0)), 0.5)
    fit(cfg, tmp_path / "whole", masks=masks, checkpoint_every=cfg.eval_every)
    real = RunDir.checkpoint

    def interrupt(self, rows, iteration, **state):
        real(self, rows, iteration, **state)
        raise KeyboardInterrupt

    monkeypatch.setattr(RunDir, "checkpoint", interrupt)
    with pytest.raises(KeyboardInterrupt):
        fit(cfg, tmp_path / "cut", masks=masks, checkpoint_every=cfg.eval_every)
    monkeypatch.setattr(RunDir, "checkpoint", real)
    assert (tmp_path / "cut" / "checkpoint.pt").exists() and not (tmp_path / "cut" / "summary.json").exists()
    if cfg.algo == "dqn":
        assert load_state(tmp_path / "cut" / "checkpoint.pt")["replay"]["pos"] == cfg.eval_every
    fit(cfg, tmp_path / "cut", masks=masks, checkpoint_every=cfg.eval_every)
    a, b = load_state(tmp_path / "whole" / "final.pt"), load_state(tmp_path / "cut" / "final.pt")
    assert all(torch.equal(a["model"][n], b["model"][n]) for n in a["model"])
    read = lambda d: (tmp_path / d / "metrics.jsonl").read_text()
    assert read("whole") == read("cut")
    assert not (tmp_path / "cut" / "checkpoint.pt").exists()


LOTTERY = LotteryConfig(strategy="global", prune_fraction=0.5, levels=2, rewind_iter=128,
                        controls=("reinit", "random_mask"))


@pytest.fixture(scope="module")
def cartpole_lottery(tmp_path_factory):
    store = tmp_path_factory.mktemp("store")
    return store, api.lottery(PPO, LOTTERY, store=store, progress=False)


def test_two_level_cartpole_lottery_end_to_end(cartpole_lottery, tmp_path):
    store, res = cartpole_lottery
    rows = res["rows"]
    assert {(r["branch"], r["level"]) for r in rows} == {("ticket", 0), ("ticket", 1), ("ticket", 2),
                                                        ("reinit", 1), ("reinit", 2),
                                                        ("random_mask", 1), ("random_mask", 2)}
    assert all(r["metric"] == "eval_return" and np.isfinite(r["es_score"]) for r in rows)
    by = {(r["branch"], r["level"]): r for r in rows}
    assert by[("ticket", 2)]["density"] == pytest.approx(0.25, abs=0.01)
    assert by[("random_mask", 2)]["density"] == by[("ticket", 2)]["density"]
    rep = store / res["experiment"].split("/")[-1] / "replicate_0"
    # the rewound ticket starts from level 0's θk, masked (bit for bit)
    theta_k = load_state(rep / "level_0" / "snapshot_128.pt")["model"]
    start = load_state(rep / "level_2" / "snapshot_128.pt")
    for n, m in start["masks"].items():
        assert torch.equal(start["model"][n], theta_k[n] * m)
    # a second call trains nothing and gives the same table
    again = api.lottery(PPO, LOTTERY, store=store, progress=False)
    assert [r["es_score"] for r in again["rows"]] == [r["es_score"] for r in rows]
    assert main(["plot", res["experiment"], "-o", str(tmp_path / "plots"), "--store", str(store)]) == 0
    for name in ("accuracy", "early_stop", "learning_curves"):
        assert (tmp_path / "plots" / f"{name}.png").exists()


def test_report_and_ls_of_an_rl_lottery(cartpole_lottery, tmp_path):
    store, res = cartpole_lottery
    assert main(["report", res["experiment"], "-o", str(tmp_path / "r.html"), "--store", str(store)]) == 0
    assert "eval_return" in (tmp_path / "r.html").read_text()
    assert main(["ls", "--store", str(store)]) == 0


def test_cli_lottery_rl(tmp_path, capsys):
    with pytest.raises(SystemExit):
        main(["lottery", "--task", "rl", "--help"])
    out = capsys.readouterr().out
    assert "--env" in out and "--algo" in out and "--keep-dense" in out
    args = ["lottery", "--task", "rl", "--env", "CartPole-v1", "--algo", "ppo", "--env-steps", "256", "--n-envs", "4",
            "--n-steps", "32", "--batch-size", "64", "--n-epochs", "1", "--eval-every", "128", "--eval-episodes", "1",
            "--val-episodes", "1", "--eval-max-steps", "20", "--levels", "1", "--workers", "1", "--quiet",
            "--store", str(tmp_path)]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "ticket_final_return" in out and "SEM" in out  # the headline, not the early-stopping pick
    assert main(args[:3] + ["--env", "NoSuchEnv-v0", "--store", str(tmp_path), "--quiet"]) == 2
    assert "NoSuchEnv-v0" in capsys.readouterr().err


@pytest.mark.parametrize("kw,match", [
    (dict(env="NoSuchEnv-v0"), "env"),
    (dict(algo="dqn", n_steps=5), "n_steps"),
    (dict(algo="ppo", buffer_size=10), "buffer_size"),
    (dict(algo="dqn", keep_dense="critic"), "keep_dense"),
    (dict(eval_every=1000), "eval_every"),
    (dict(env_steps=1000), "env_steps"),
])
def test_bad_configs_raise_one_line_errors(kw, match):
    with pytest.raises(ConfigError, match=match):
        validate(RLConfig(**kw))


def test_rewind_point_must_fall_between_rollouts(tmp_path):
    with pytest.raises(ConfigError, match="rewind_iter"):
        api.lottery(PPO, LotteryConfig(levels=1, rewind_iter=100), store=tmp_path, progress=False)


def test_area_resize_matches_block_means():
    import gymnasium as gym

    class Frame(gym.Env):
        observation_space = gym.spaces.Box(0, 255, (168, 168), np.uint8)
        action_space = gym.spaces.Discrete(1)

    frame = np.random.default_rng(0).integers(0, 256, (168, 168)).astype(np.uint8)
    out = AreaResize(Frame(), 84).observation(frame)  # an integer factor: 2×2 block means
    ref = frame.reshape(84, 2, 84, 2).astype(np.float64).mean((1, 3))
    assert np.abs(out.astype(np.float64) - ref).max() <= 0.5 + 1e-6
    # 210×160 → 84×84: every output is a convex combination of the inputs it covers
    Frame.observation_space = gym.spaces.Box(0, 255, (210, 160), np.uint8)
    flat = AreaResize(Frame(), 84).observation(np.full((210, 160), 77, np.uint8))
    assert (flat == 77).all()


def test_pixel_agent_trains_with_masks(tmp_path):
    """ALE Atari end to end on a tiny budget: preprocessing, NatureCNN policy, masks through updates."""
    cfg = RLConfig(env="ALE/Pong-v5", algo="ppo", env_steps=64, n_envs=2, n_steps=16, batch_size=16, n_epochs=1,
                   eval_every=32, eval_episodes=1, val_episodes=1, eval_max_steps=5)
    validate(cfg)
    tr = make_trainer(cfg)
    model = tr.build(0)
    names = set(tr.prunable(model))
    assert {"features_extractor.cnn.0.weight", "features_extractor.linear.0.weight", "action_net.weight"} <= names
    masks = random_masks(tr.prunable(model), 0.5)
    s = tr.fit(model, tmp_path / "run", masks=masks)
    assert s["final"]["iter"] == 64 and s["env_steps_per_s"] > 0
    w = load_state(tmp_path / "run" / "final.pt")["model"]
    assert all(torch.count_nonzero(w[n][~m]) == 0 for n, m in masks.items())


@pytest.mark.parametrize("cfg", [PPO, DQN], ids=["ppo", "dqn"])
def test_a_diverging_agent_stops_at_once_and_is_recorded_as_diverged(tmp_path, cfg):
    """Divergence is a result (issue 17): at lr = 1e30 the loss inside SB3's update turns NaN; the run
    stops before that update is applied, its summary says `diverged at iteration N` (strict JSON), the
    last row is null and the aggregate counts the run instead of averaging it."""
    import dataclasses
    from ticketlab.engine.results import aggregate, diverged_at, summary_metrics
    s = fit(dataclasses.replace(cfg, lr=1e30), tmp_path / "bad")
    n = s["diverged"]["iteration"]
    assert 0 < n < cfg.env_steps / 2  # stopped at once
    on_disk = json.loads((tmp_path / "bad" / "summary.json").read_text(), parse_constant=lambda c: 1 / 0)
    assert on_disk["diverged"] == {"iteration": n}
    rows = [json.loads(r) for r in (tmp_path / "bad" / "metrics.jsonl").read_text().splitlines()]
    assert rows[-1]["iter"] == n and rows[-1]["eval_return"] is None and rows[0]["eval_return"] is not None
    final = load_state(tmp_path / "bad" / "final.pt")
    assert final["iteration"] == n and all(torch.isfinite(v).all() for v in final["model"].values())
    good = fit(cfg, tmp_path / "good")
    runs = [{"branch": "ticket", "level": 0, "density": 1.0, **summary_metrics(x), "diverged": diverged_at(x)}
            for x in (good, s)]
    [a] = aggregate(runs)
    assert a["n"] == 1 and a["n_diverged"] == 1 and a["es_score"] == good["early_stop"]["eval_return"]
