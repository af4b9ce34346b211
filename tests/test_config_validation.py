"""Every config validates on construction, in Python as on the CLI: one-line ConfigErrors naming the
field, the value and what was expected; the sparse methods share one vocabulary with SparseConfig."""

import dataclasses
import math
import typing

import pytest

from ticketlab.cli.commands import parser
from ticketlab.core import config as C
from ticketlab.core.errors import ConfigError
from ticketlab.domains.nlp.lm_task import LMConfig
from ticketlab.domains.nlp.translate_task import TranslateConfig
from ticketlab.domains.rl.config import RLConfig
from ticketlab.experiments.lottery.trunk import LotteryConfig
from ticketlab.experiments.sparse_training import (SparseConfig, SparseRun, make_method, method_config,
                                                   method_fields)
from ticketlab.experiments.teacher_student.spec import TeacherStudentConfig
from ticketlab.experiments.transfer import TransferConfig
from ticketlab.methods import sparse
from ticketlab.methods.saliency import SNIP, GraSP, SynFlow
from ticketlab.training.loop import TrainConfig

# a valid instance of every config class (defaults, where the defaults are valid)
VALID = [TrainConfig(), LotteryConfig(), SparseConfig(), TransferConfig(), TeacherStudentConfig(), RLConfig(),
         LMConfig(), TranslateConfig(), sparse.SET(end_step=100), sparse.RigL(end_fraction=0.75), sparse.SNFS(end_step=10),
         sparse.GMP(), sparse.Static(), sparse.Dense(), SNIP(), GraSP(), SynFlow()]
IDS = [type(c).__name__ for c in VALID]


def _bad_values(cfg):
    """(field, bad value) pairs from every field's choices, range and type."""
    hints = typing.get_type_hints(type(cfg))
    for f in dataclasses.fields(cfg):
        m, kind = f.metadata, C._base_type(hints[f.name])[0]
        tuple_field = kind is tuple
        wrap = (lambda v: (v,)) if tuple_field else (lambda v: v)
        if m.get("choices"):
            yield f.name, wrap("no-such-choice")
        if m.get("min") is not None:
            yield f.name, wrap(m["min"] - 1)
        if m.get("max") is not None:
            yield f.name, wrap(m["max"] + 1)
        inner = C._base_type(typing.get_args(hints[f.name])[0])[0] if tuple_field else kind
        if inner is float or (tuple_field and inner is float):
            yield f.name, wrap(math.nan)
            yield f.name, wrap(math.inf)
            yield f.name, wrap(-math.inf)
        if kind is int:
            yield f.name, 2.5
        if kind is str:
            yield f.name, 3
        if kind is bool:
            yield f.name, "yes"


@pytest.mark.parametrize("cfg", VALID, ids=IDS)
def test_every_config_is_a_config_and_valid_defaults_construct(cfg):
    assert isinstance(cfg, C.Config)
    assert C.from_dict(type(cfg), C.to_dict(cfg)) == cfg  # its defaults pass its own checks, and round-trip


@pytest.mark.parametrize("cfg", VALID, ids=IDS)
def test_every_bad_value_raises_at_construction_naming_the_field(cfg):
    cases = list(_bad_values(cfg))
    assert cases or not dataclasses.fields(cfg)
    for name, value in cases:
        with pytest.raises(ConfigError) as e:
            dataclasses.replace(cfg, **{name: value})
        msg = str(e.value)
        assert msg.startswith(f"{name}: got ") and "expected" in msg and "\n" not in msg, (name, value, msg)


@pytest.mark.parametrize("make,message", [
    (lambda: LotteryConfig(strategy="Layerwise"), "strategy: got 'Layerwise', expected one of layerwise, global"),
    (lambda: LotteryConfig(prune_fraction=1.5), "prune_fraction: got 1.5, expected a number strictly between 0 and 1 "
                                                "(0 prunes nothing, 1 prunes every weight)"),
    (lambda: LotteryConfig(controls="reinit"), "controls: got 'reinit', expected a list"),
    (lambda: LotteryConfig(levels=2.5), "levels: got 2.5, expected an integer"),
    (lambda: TrainConfig(lr=float("nan")), "lr: got nan, expected a finite number"),
    (lambda: TrainConfig(betas=(0.9, float("inf"))), "betas: got inf, expected a finite number"),
    (lambda: TrainConfig(dataset=None), "dataset: got None, expected a string"),
    (lambda: TrainConfig(milestones=(100, "x")), "milestones: got 'x' in (100, 'x'), expected an integer per entry"),
    (lambda: SparseConfig(gmp_begin=0.8, gmp_end=0.5), "gmp_begin: got 0.8, expected <= gmp_end (0.5)"),
    (lambda: SparseConfig(method="magic"), "method: got 'magic', expected one of dense, static, set, snfs, rigl, "
                                           "gmp, snip, grasp, synflow"),
    (lambda: TranslateConfig(src_lang="de"), "tgt_lang: got 'de', the same as src_lang"),
    (lambda: RLConfig(algo="dqn", n_steps=5), "n_steps: got 5, but dqn does not use it (leave it unset)"),
    (lambda: sparse.RigL(), "end_step: got None, a cosine drop_fraction_decay needs an end_step or end_fraction"),
    (lambda: sparse.SET(end_step=10, end_fraction=0.5), "end_fraction: got 0.5 and end_step 10; expected one of the two"),
    (lambda: sparse.GMP(begin_fraction=0.5, end_fraction=0.2), "begin_fraction: got 0.5, expected <= end_fraction (0.2)"),
    (lambda: sparse.SNFS(end_step=10, momentum=1.0), "momentum: got 1.0, expected a value in [0.0, 0.999]"),
])
def test_listed_bad_values(make, message):
    with pytest.raises(ConfigError) as e:
        make()
    assert str(e.value) == message


def test_huge_ints_are_finite():
    assert TrainConfig(init_seed=10**400).init_seed == 10**400


def test_lists_become_tuples_and_hash_the_same():
    a, b = LotteryConfig(controls=["reinit"], layers=["*"]), LotteryConfig(controls=("reinit",), layers=("*",))
    assert a == b and a.controls == ("reinit",)
    assert C.config_hash("x", a) == C.config_hash("x", b)


def test_an_int_is_a_float_and_keeps_its_hash():
    # an int given for a float field is accepted and stored as given: an existing hash does not move
    cfg = TrainConfig(lr=1)
    assert cfg.lr == 1 and isinstance(cfg.lr, int)
    assert C.canonical_json("train", cfg) == C.canonical_json("train", TrainConfig()).replace('"lr":0.0012', '"lr":1')


# ---- sparse methods: one vocabulary ------------------------------------------------------------

def _old_make_method(cfg, total):
    """make_method as it was before SparseConfig mapped to the method classes."""
    if cfg.method == "dense":
        return None
    if cfg.method in ("static", "snip", "grasp", "synflow"):
        return sparse.Static()
    if cfg.method == "gmp":
        return sparse.GMP(begin_step=math.floor(cfg.gmp_begin * total), end_step=math.floor(cfg.gmp_end * total),
                          frequency=cfg.gmp_frequency)
    kw = dict(update_interval=cfg.update_interval, drop_fraction=cfg.drop_fraction,
              drop_fraction_decay=cfg.drop_fraction_decay, end_step=math.floor(cfg.end_fraction * total))
    if cfg.skip_step is not None:
        kw["skip_step"] = cfg.skip_step
    if cfg.method == "snfs":
        kw["momentum"] = cfg.snfs_momentum
    return sparse.METHODS[cfg.method](**kw)


@pytest.mark.parametrize("method", list(sparse.METHODS))
@pytest.mark.parametrize("changes", [{}, dict(update_interval=7, drop_fraction=0.5, drop_fraction_decay="constant",
                                              end_fraction=0.33, skip_step=False, snfs_momentum=0.5, gmp_begin=0.2,
                                              gmp_end=0.3, gmp_frequency=3), dict(skip_step=True, end_fraction=1.0)])
def test_make_method_builds_what_it_built_before(method, changes):
    cfg = SparseConfig(method=method, **changes)
    for total in (1, 999, 3000):
        assert make_method(cfg, total) == _old_make_method(cfg, total)


def test_fraction_of_training_resolves_and_the_updater_wants_it_resolved():
    m = sparse.RigL(end_fraction=0.75)
    assert m.unresolved() == ["end_fraction"]
    r = m.resolve(1001)
    assert r.end_step == 750 and r.end_fraction is None and r.unresolved() == []
    g = sparse.GMP(begin_fraction=0.1, end_fraction=0.5, frequency=10).resolve(200)
    assert (g.begin_step, g.end_step) == (20, 100)
    with pytest.raises(ConfigError, match="^end_fraction: got 0.75, a fraction of training"):
        sparse.Updater(m, {"w": 0.5})
    with pytest.raises(ConfigError, match="expected a sparse-training Method"):
        sparse.Updater(SNIP(), {"w": 0.5})


def test_sparse_config_fields_share_the_method_metadata():
    for name in method_fields("rigl") + method_fields("gmp") + method_fields("grasp"):
        f = SparseConfig.__dataclass_fields__[name]
        owners, target = f.metadata["sets"]
        mf = owners[0].__dataclass_fields__[target].metadata
        assert (f.metadata["min"], f.metadata["max"], f.metadata["choices"]) == (mf["min"], mf["max"], mf["choices"])
        assert f.metadata["help"].startswith(mf["help"]) or name == "skip_step"
    assert method_config(SparseConfig(method="snfs", snfs_momentum=0.5)).momentum == 0.5
    assert method_config(SparseConfig(method="grasp", grasp_temperature=50.0)) == GraSP(batch=100, temperature=50.0)
    assert method_fields("dense") == [] and method_fields("static") == []


def test_one_registry():
    from ticketlab.experiments import sparse_training
    assert sparse_training.METHODS is sparse.METHODS
    assert sparse_training.PRUNE_AT_INIT == ("snip", "grasp", "synflow")
    assert SparseConfig.__dataclass_fields__["method"].metadata["choices"] is sparse.METHODS


def _sub_help(argv):
    ap = parser(argv)
    sub = next(a for a in ap._actions if a.dest == "command").choices["sparse-train"]
    return sub.format_help()


def test_sparse_train_shows_the_chosen_methods_flags():
    rigl = _sub_help(["sparse-train", "--method", "rigl"])
    gmp = _sub_help(["sparse-train", "--method=gmp"])
    assert "--update-interval" in rigl and "--gmp-begin" not in rigl and "method rigl: Rigged Lottery" in rigl
    assert "--gmp-begin" in gmp and "--update-interval" not in gmp and "--sparsity" in gmp
    assert "--grasp-temperature" in _sub_help(["sparse-train", "--method", "grasp"])


def test_sparse_train_accepts_every_old_flag_whatever_the_method():
    argv = ["sparse-train", "--method", "set", "--gmp-begin", "0.2", "--snfs-momentum", "0.5", "--saliency-batch",
            "10", "--update-interval", "5", "--skip-step"]
    ns = parser(argv).parse_args(argv)
    assert (ns.gmp_begin, ns.snfs_momentum, ns.saliency_batch, ns.update_interval, ns.skip_step) == (
        "0.2", "0.5", "10", "5", True)
    cfg = C.from_dict(SparseConfig, C.flags_to_dict(SparseConfig, ns))
    assert C.config_hash("sparse", SparseRun(TrainConfig(), cfg)) == C.config_hash(
        "sparse", SparseRun(TrainConfig(), SparseConfig(method="set", gmp_begin=0.2, snfs_momentum=0.5, saliency_batch=10,
                                                        update_interval=5, skip_step=True)))
