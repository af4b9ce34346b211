"""One learning-rate schedule (`ticketlab.core.schedules.lr_factor`) for every loop: it gives, on a grid,
exactly the factors of the three schedules it replaced (classification, NLP, teacher-student)."""

import bisect
import math

import pytest

from ticketlab.core.schedules import lr_factor
from ticketlab.domains.nlp import loop as nlp_loop
from ticketlab.experiments.teacher_student.loop import _lr_at
from ticketlab.experiments.teacher_student.spec import TeacherStudentConfig


def old_classify(it, *, schedule, total, milestones=(), gamma=0.1, warmup_iters=0):
    if schedule == "constant":
        f = 1.0
    elif schedule == "multistep":
        f = gamma ** bisect.bisect_right(sorted(milestones), it)
    else:
        f = 0.5 * (1.0 + math.cos(math.pi * min(it, total) / max(total, 1)))
    if warmup_iters > 0 and it < warmup_iters:
        f *= (it + 1) / warmup_iters
    return f


def old_nlp(it, *, schedule, total, steps_per_epoch, warmup=0, decay_start=0.0, decay_every=1.0, lr_decay=1.0):
    if schedule == "zaremba":
        epoch = it / steps_per_epoch
        f = lr_decay ** (math.floor((epoch - decay_start) / decay_every) + 1) if epoch >= decay_start else 1.0
    elif schedule == "cosine":
        f = 0.5 * (1.0 + math.cos(math.pi * min(it, total) / max(total, 1)))
    elif schedule == "inverse_sqrt":
        f = math.sqrt(max(warmup, 1) / max(it + 1, warmup, 1))
    else:
        f = 1.0
    if warmup > 0 and it < warmup:
        f *= (it + 1) / warmup
    return f


ITERS = [0, 1, 7, 99, 100, 101, 250, 499, 500, 999, 1000, 1300, 5000]


@pytest.mark.parametrize("schedule", ["constant", "multistep", "cosine"])
@pytest.mark.parametrize("warmup", [0, 1, 120])
@pytest.mark.parametrize("milestones,gamma", [((), 0.1), ((500, 100), 0.2), ((100, 100, 999), 0.5)])
def test_classification_factors_unchanged(schedule, warmup, milestones, gamma):
    for total in (1, 1000):
        kw = dict(schedule=schedule, total=total, milestones=milestones, gamma=gamma, warmup_iters=warmup)
        assert [lr_factor(i, **kw) for i in ITERS] == [old_classify(i, **kw) for i in ITERS]


@pytest.mark.parametrize("schedule", ["zaremba", "cosine", "inverse_sqrt", "constant"])
@pytest.mark.parametrize("warmup", [0, 50, 500])
@pytest.mark.parametrize("decay", [(0.0, 1.0, 1.0), (4.0, 1.0, 0.5), (6.0, 0.5, 1 / 1.2)])
def test_nlp_factors_unchanged(schedule, warmup, decay):
    start, every, factor = decay
    kw = dict(schedule=schedule, total=1300, steps_per_epoch=100, decay_start=start, decay_every=every, lr_decay=factor)
    old = [old_nlp(i, warmup=warmup, **kw) for i in ITERS]
    assert [lr_factor(i, warmup_iters=warmup, **kw) for i in ITERS] == old
    assert [nlp_loop.lr_factor(i, warmup=warmup, **kw) for i in ITERS] == old  # the old keyword still works


@pytest.mark.parametrize("milestones", [(), (100,), (1000, 100, 100)])
def test_teacher_student_lr_unchanged(milestones):
    cfg = TeacherStudentConfig(lr=0.03, gamma=0.7, milestones=milestones)
    assert [_lr_at(cfg, i) for i in ITERS] == [cfg.lr * cfg.gamma ** sum(1 for m in milestones if i >= m)
                                               for i in ITERS]


def test_unknown_schedule():
    with pytest.raises(ValueError):
        lr_factor(0, schedule="exponential", total=10)
