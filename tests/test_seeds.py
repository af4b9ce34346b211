"""One seed hash (`ticketlab.core.seeds`): every helper that derives a seed returns the integers it
returned before the helpers were merged, so stored random controls and tickets reproduce bit for bit."""

import hashlib

import pytest

from ticketlab.core.scores import name_seed
from ticketlab.core.seeds import derive_seed, stream_seed
from ticketlab.experiments.lottery.controls import control_seed
from ticketlab.experiments.teacher_student.spec import _seed as teacher_student_seed
from ticketlab.experiments.transfer import _seed as transfer_seed


class Rep:  # what control_seed reads of a Replicate
    def __init__(self, seed, r):
        self.seed, self.r = seed, r


def test_values_pinned_from_the_old_helpers():
    # computed with the four separate helpers before they shared core/seeds.py
    assert [name_seed(0, "fc1.weight"), name_seed(7, "saliency-batch"), name_seed(3, "layer/set-grow/100")] == [
        4022590910196729911, 1079271954476725109, 7733922947537599598]
    assert [control_seed(Rep(0, 0), "reinit", 1, 0), control_seed(Rep(5, 2), "random_mask", 3, 1)] == [
        3596021391, 2292248450]
    assert [teacher_student_seed(0, 1), teacher_student_seed(42, 4)] == [1, 42000130]
    assert [transfer_seed("lottery-168adf035c04", 0, 1, "random", 0), transfer_seed(1, 2, 3)] == [
        2783069658, 3998811383]


@pytest.mark.parametrize("seed", [0, 1, 17, 2**40])
@pytest.mark.parametrize("name", ["fc1.weight", "conv/0", "a:b", ""])
def test_same_as_the_old_formulas_on_a_grid(seed, name):
    d = hashlib.sha256(f"{seed}:{name}".encode()).digest()
    assert name_seed(seed, name) == int.from_bytes(d[:8], "little") & (2**63 - 1)
    for level, draw in [(0, 0), (3, 2)]:
        d = hashlib.sha256(f"{seed}:{level}:{name}:{level}:{draw}".encode()).digest()
        assert control_seed(Rep(seed, level), name, level, draw) == int.from_bytes(d[:4], "little")
    d = hashlib.sha256(":".join(map(str, ("random-ticket-init", name, seed, 1))).encode()).digest()
    assert transfer_seed("random-ticket-init", name, seed, 1) == int.from_bytes(d[:4], "little")
    assert teacher_student_seed(seed, 3) == seed * 1_000_003 + 3


def test_derive_seed_bits_and_stream_seed():
    assert derive_seed(1, "x", bits=32) == derive_seed(1, "x", bits=64) & 0xFFFFFFFF
    assert 0 <= derive_seed(1, "x") < 2**63
    assert stream_seed(2, 5) == 2_000_011
    with pytest.raises(ValueError):
        derive_seed(1, bits=0)
