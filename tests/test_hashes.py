"""Experiment hashes are pinned: a refactor must never move an existing store's folders.

Each value below was computed on HEAD 1d2429c, before the package was split into floors
(open_lth's hash-regression test does the same). A failure here means that stores made by
earlier versions would no longer resolve: change the code, never the number.
"""

import pytest

from ticketlab.core.config import config_hash
from ticketlab.experiments.lottery.trunk import LotteryConfig, LotteryRun
from ticketlab.experiments.sparse_training import SparseConfig, SparseRun
from ticketlab.experiments.teacher_student.spec import TeacherStudentConfig
from ticketlab.training.loop import TrainConfig
from ticketlab.experiments.transfer import RandomTicketRun, TransferConfig, TransferRun

LENET = dict(model="lenet300_100", dataset="mnist", optimizer="adam", lr=1.2e-3, batch_size=60,
             iterations=50000)


def _cases():
    t, t2 = TrainConfig(), TrainConfig(**LENET)
    yield "train-default", "train", t, "f7f79e6b4e67"
    yield "train-lenet", "train", t2, "f10b81ad524f"
    yield "lottery-default", "lottery", LotteryRun(t, LotteryConfig(), task="classify"), "168adf035c04"
    yield ("lottery-late-global", "lottery",
           LotteryRun(t2, LotteryConfig(strategy="global", rewind_iter=500, levels=3, controls=("reinit",)),
                      task="classify"), "654a6d0b7366")
    yield "sparse-default", "sparse", SparseRun(t, SparseConfig()), "797a30de7cba"
    yield ("sparse-set-uniform", "sparse",
           SparseRun(t2, SparseConfig(method="set", sparsity=0.95, distribution="uniform")), "1ec253c8d42b")
    yield "teacher-student", "teacher_student", TeacherStudentConfig(), "f3b799cf4f0b"
    yield ("transfer", "transfer",
           TransferRun("lottery-168adf035c04", t2, TransferConfig(source="lottery-168adf035c04")), "d42e7582c8d1")
    yield "random-ticket", "random_ticket", RandomTicketRun(t2, 100, 0), "46df27b5c125"


@pytest.mark.parametrize("name,kind,cfg,expected", list(_cases()), ids=lambda v: v if isinstance(v, str) else "")
def test_hash_is_pinned(name, kind, cfg, expected):
    assert config_hash(kind, cfg) == expected, name


def test_task_hashes_are_pinned():
    from ticketlab.domains.nlp.lm_task import LMConfig
    from ticketlab.domains.nlp.translate_task import TranslateConfig
    from ticketlab.domains.rl.config import RLConfig

    # RL moved deliberately (issue #18 point 2): eval_episodes and val_episodes default to 20, not 10,
    # so an RL experiment with the defaults measures its return over more episodes; it was 6fc19d257319.
    assert config_hash("lottery", LotteryRun(RLConfig(), LotteryConfig(), task="rl")) == "46c1fd4bab6a"
    # the same experiment with the old evaluation counts set explicitly keeps its old identity
    old = RLConfig(eval_episodes=10, val_episodes=10)
    assert config_hash("lottery", LotteryRun(old, LotteryConfig(), task="rl")) == "6fc19d257319"
    assert config_hash("lottery", LotteryRun(LMConfig(), LotteryConfig(), task="lm")) == "974b327db093"
    assert config_hash("lottery", LotteryRun(TranslateConfig(), LotteryConfig(), task="translate")) == "258286279703"
