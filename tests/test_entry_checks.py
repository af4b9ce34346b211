"""Values checked where they enter (issue 17): prune_fraction strictly inside (0, 1), levels and
target_sparsity mutually exclusive (an explicit levels told apart from its default, hashes kept),
control_levels within the run (checked before anything trains), --points >= 3."""

import dataclasses
import json

import pytest

from ticketlab import api
from ticketlab.core import config as C
from ticketlab.core.errors import ConfigError
from ticketlab.engine.store import stored_shape
from ticketlab.experiments.lottery.trunk import LotteryConfig, LotteryRun, stored_lottery
from ticketlab.training.loop import TrainConfig


@pytest.mark.parametrize("f", [0.0, 1.0])
def test_prune_fraction_strictly_inside(f):
    with pytest.raises(ConfigError, match="prune_fraction: got .*strictly between 0 and 1"):
        LotteryConfig(prune_fraction=f)
    with pytest.raises(ConfigError, match="prune_fraction"):
        C.from_dict(LotteryConfig, {"prune_fraction": str(f)}, source="the command line")


@pytest.mark.parametrize("levels", [1, 5])
def test_levels_and_target_sparsity_exclusive(levels):
    with pytest.raises(ConfigError, match="levels: got .* together with target_sparsity"):
        LotteryConfig(levels=levels, target_sparsity=0.5)
    with pytest.raises(ConfigError, match="target_sparsity"):
        C.from_dict(LotteryConfig, {"levels": levels, "target_sparsity": 0.5})


def test_default_levels_keeps_target_sparsity_hashes_and_stored_shape():
    cfg = LotteryConfig(target_sparsity=0.5)
    assert cfg.levels == 5 and json.dumps(C.to_dict(cfg)["levels"]) == "5"
    assert C.config_hash("lottery", LotteryRun(TrainConfig(), cfg)) == \
        C.config_hash("lottery", LotteryRun(TrainConfig(), LotteryConfig()))
    assert dataclasses.replace(cfg, target_sparsity=None) == LotteryConfig()
    assert C.replace(cfg, strategy="global").target_sparsity == 0.5
    # config.json of a target_sparsity run records the default levels beside it: it reads back
    stored = json.loads(json.dumps(C.to_dict(cfg)))
    assert stored_lottery(stored, "config.json").target_sparsity == 0.5
    # the stored level count still grows (default 5 is an int for the stored shape)
    assert stored_shape({"levels": 7}, C.to_dict(LotteryConfig()), {})["levels"] == 7


def test_control_levels_outside_the_run_refused_before_training(tmp_path):
    with pytest.raises(ConfigError, match=r"control_levels: got 99, expected a level in 1\.\.1"):
        api.lottery(TrainConfig(iterations=2, eval_every=1, batch_size=8, train_fraction=0.05),
                    LotteryConfig(levels=1, controls=("reinit",), control_levels=(99,)),
                    store=tmp_path, progress=False)
    assert not list(tmp_path.rglob("summary.json")) and not list(tmp_path.rglob("*.pt"))


def test_points_minimum_matches_the_help():
    from ticketlab.cli.commands import parser
    from ticketlab.experiments.lottery.instability import path_alphas
    helps = [a.help for a in parser()._subparsers._group_actions[0].choices["instability"]._actions
             if "--points" in a.option_strings]
    assert helps and ">= 3" in helps[0]
    assert len(path_alphas(3)) == 3
    with pytest.raises(ConfigError, match="points: got 2, expected an integer >= 3"):
        path_alphas(2)
