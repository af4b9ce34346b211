"""The teacher–student experiment's identity and the pieces of one run: the config, the teacher,
the data, and a run's spec on the results store.

Tian et al. 2019 ("Luck Matters", §5) and Tian 2019 ("Student Specialization", §6): a fixed
teacher, an over-realized student of the same depth, Gaussian inputs. Each run (one seed) draws
its teacher (unless `teacher_seed` fixes one), its student init, its training and evaluation inputs
and its minibatches from separate generators seeded by (seed, purpose), so a run is reproducible
on its own, whatever it is trained beside. Its teacher and initial student are written once as
tensors (`teacher.pt`, `init.pt`) and never re-derived.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from ticketlab.core import config as C
from ticketlab.core.config import Config, param
from ticketlab.core.errors import ConfigError, TicketlabError
from ticketlab.core.seeds import stream_seed
from ticketlab.engine.store import Experiment
from ticketlab.experiments.teacher_student import prune as P
from ticketlab.experiments.teacher_student.net import ACTIVATIONS, Net
from ticketlab.experiments.teacher_student.student import INITS, make_student
from ticketlab.experiments.teacher_student.teacher import GRID, load_teacher, make_teacher
from ticketlab.training.rundir import load_state, save_file

KIND = "teacher_student"


@dataclass(frozen=True)
class TeacherStudentConfig(Config):
    """One teacher–student experiment. Defaults: SS's two-layer setting (d 100, m 10, c 50)."""

    # ---- teacher ----
    input_dim: int = param(100, "input dimension d", min=1)
    teacher_widths: tuple[int, ...] = param((10,), "teacher hidden widths, bottom to top", min=1)
    output_dim: int = param(50, "output dimension", min=1)
    activation: str = param("relu", "hidden activation of teacher and student", choices=ACTIVATIONS)
    leaky_slope: float = param(0.01, "negative slope of leaky_relu", min=0.0, max=1.0)
    grid: tuple[float, ...] = param(GRID, "values a teacher weight is drawn from")
    teacher_bias: str = param("constant", "teacher biases: uniform U(-0.5, 0.5) (LM) or constant bias_value (SS)",
                              choices=("uniform", "constant"))
    bias_value: float = param(-0.1, "the constant teacher bias")
    strength_decay: float = param(0.0, "p: hidden node i's fan-out divided by (i+1)^p", min=0.0)
    tune_bias: bool = param(False, "shift teacher biases so each node fires on about half the inputs")
    standardize_output: bool = param(False, "rescale the teacher's outputs to mean 0, std 1")
    teacher_seed: int | None = param(None, "one teacher for every seed (None: each seed its own teacher)", min=0)
    teacher_checkpoint: str | None = param(
        None, "a trained mlp/lenet300_100 run folder (final.pt + mask.pt) as the teacher; "
              "overrides input_dim, teacher_widths, output_dim, activation")
    # ---- student ----
    multi: int = param(5, "over-realization: every student hidden layer is multi × the teacher's", min=1)
    init: str = param("default", "student init: default (PyTorch), small (N(0, init_std²)), "
                      "perturbed (teacher + N(0, perturb_std²))", choices=INITS)
    init_std: float = param(0.005, "std of the small init", min=0.0)
    perturb_std: float = param(0.0, "noise std of the perturbed init", min=0.0)
    # ---- data ----
    data_std: float = param(1.5, "std of the Gaussian inputs", min=1e-9)
    train_size: int = param(10000, "training inputs sampled once per seed (0: fresh inputs every step)", min=0)
    eval_size: int = param(10000, "evaluation inputs (correlations, success, eval loss)", min=3)
    # ---- training ----
    optimizer: str = param("sgd", "optimizer", choices=("sgd", "adam"))
    lr: float = param(0.01, "learning rate", min=0.0)
    momentum: float = param(0.0, "SGD momentum", min=0.0, max=1.0)
    milestones: tuple[int, ...] = param((), "steps at which the learning rate is multiplied by gamma", min=1)
    gamma: float = param(0.5, "learning-rate factor at each milestone", min=0.0)
    loss: str = param("half_sse", "half_sse: ½·sum over outputs (SS); mse: mean over outputs (LM, nn.MSELoss)",
                      choices=("half_sse", "mse"))
    batch_size: int = param(16, "minibatch size (drawn with replacement from the training set)", min=1)
    steps: int = param(20000, "SGD steps", min=1)
    log_every: int = param(1000, "measure correlations on the eval set every N steps", min=1)
    seed: int = param(0, "first seed (teacher, student init and data of run r use seed + r)", min=0)
    # ---- run shape and readouts: not part of the identity ----
    seeds: int = param(4, "independent runs (seeds seed .. seed + seeds - 1)", min=1, hashed=False)
    threshold: float = param(0.95, "a teacher node is specialized when a student node correlates >= this",
                             min=-1.0, max=1.0, hashed=False)
    prune: bool = param(False, "after training, node-prune each student and retrain the ticket and a reinit",
                        hashed=False)
    prune_score: str = param("fanout_norm", "node score: fanout_norm (L2) or mean_abs_fanout (LM code)",
                             choices=P.SCORES, hashed=False)
    prune_keep: float = param(1.0, "nodes kept per layer, as a multiple of the teacher's width", min=1e-9,
                              hashed=False)
    prune_retrain: bool = param(True, "with prune: also retrain the ticket (kept nodes from their init) "
                                "and a random reinit of the pruned shape", hashed=False)
    # Merging is a step of the pruning readout, like prune_score and prune_keep: it never changes the
    # trained students (the experiment), so it stays out of the hash and names its own prune folder
    # (experiment.prune_dir); with and without merge then read the same students (issue #18).
    prune_merge: bool = param(False, "with prune: first merge each layer's co-aligned nodes (fan-in and bias at "
                              "cosine >= prune_merge_cos) into one node, summing their scaled fan-outs",
                              hashed=False)
    prune_merge_cos: float = param(0.95, "with prune_merge: the cosine at or above which two nodes' fan-in "
                                   "(with bias) vectors count as co-aligned", min=0.0, max=1.0, hashed=False)

    def check(self):
        if self.train_size and self.train_size < self.batch_size:
            raise ConfigError(f"train_size: got {self.train_size}, expected 0 or at least batch_size "
                              f"({self.batch_size})")


# Runs train in one stacked computation when their shapes (compared directly) and these fields
# agree; every other field only changes values (seed, strength decay, data std, init, ...).
SCHEDULE_FIELDS = ("optimizer", "lr", "momentum", "milestones", "gamma", "loss", "batch_size", "steps",
                   "log_every", "train_size", "eval_size", "activation", "leaky_slope")


def seeds_of(cfg: TeacherStudentConfig) -> list[int]:
    """The seeds of the experiment's students: `cfg.seeds` consecutive seeds from `cfg.seed`."""
    return list(range(cfg.seed, cfg.seed + cfg.seeds))


# ---- building blocks ------------------------------------------------------------------------

def build_teacher(cfg: TeacherStudentConfig, seed: int) -> Net:
    """The teacher of run `seed` (a stack of one)."""
    if cfg.teacher_checkpoint:
        net = load_teacher(cfg.teacher_checkpoint)
        if cfg.strength_decay:
            from ticketlab.experiments.teacher_student.teacher import apply_strength_decay
            apply_strength_decay(net, cfg.strength_decay)
        if cfg.tune_bias or cfg.standardize_output:
            from ticketlab.experiments.teacher_student.teacher import standardize_output, tune_biases
            g = torch.Generator().manual_seed(_seed(cfg.teacher_seed if cfg.teacher_seed is not None else seed, 5))
            x = torch.randn(10240, net.input_dim, generator=g) * cfg.data_std
            if cfg.tune_bias:
                tune_biases(net, x)
            if cfg.standardize_output:
                standardize_output(net, x)
        return net
    return make_teacher(cfg.input_dim, cfg.teacher_widths, cfg.output_dim,
                        seed=cfg.teacher_seed if cfg.teacher_seed is not None else seed,
                        activation=cfg.activation, slope=cfg.leaky_slope, grid=cfg.grid, bias=cfg.teacher_bias,
                        bias_value=cfg.bias_value, strength_decay=cfg.strength_decay, tune_bias=cfg.tune_bias,
                        standardize=cfg.standardize_output, data_std=cfg.data_std)


def _seed(seed: int, stream: int) -> int:
    """Independent generator seeds per purpose (1: student init, 2: train set, 3: eval set, 4: batches)."""
    return stream_seed(int(seed), stream)


def datasets(cfg: TeacherStudentConfig, seed: int, input_dim: int) -> tuple[torch.Tensor | None, torch.Tensor]:
    """(training inputs [train_size, d] or None when fresh every step, evaluation inputs [eval_size, d])."""
    train = None
    if cfg.train_size:
        train = torch.randn(cfg.train_size, input_dim, generator=torch.Generator().manual_seed(_seed(seed, 2)))
        train *= cfg.data_std
    ev = torch.randn(cfg.eval_size, input_dim, generator=torch.Generator().manual_seed(_seed(seed, 3)))
    return train, ev * cfg.data_std


_save = save_file  # teacher.pt, init.pt: atomic, loadable with weights_only


@dataclass(frozen=True)
class JobSpec:
    """One run to train: picklable, so a group of them can go to a worker process."""

    exp_path: str
    run_dir: str
    cfg: dict          # the TeacherStudentConfig as a dict
    seed: int          # data and batch-sampling seed
    teacher_path: str
    init_path: str
    lock: str          # the part of the experiment this run locks

    @property
    def config(self) -> TeacherStudentConfig:
        return C.from_dict(TeacherStudentConfig, self.cfg)

    def shapes(self) -> tuple:
        t = load_state(Path(self.teacher_path))
        s = load_state(Path(self.init_path))
        return (tuple(tuple(w.shape) for w in t["weights"]), tuple(tuple(w.shape) for w in s["weights"]))


def prepare_run(exp: Experiment, cfg: TeacherStudentConfig, seed: int) -> JobSpec:
    """Write a run's teacher.pt and init.pt (once) and return its JobSpec."""
    run_dir = exp.path / f"seed_{seed}"
    run_dir.mkdir(parents=True, exist_ok=True)
    tpath, ipath = run_dir / "teacher.pt", run_dir / "init.pt"
    if not tpath.exists():
        _save(tpath, build_teacher(cfg, seed).state(0))
    if not ipath.exists():
        teacher = Net.from_state(load_state(tpath))
        student = make_student(teacher, cfg.multi, seed=_seed(seed, 1), init=cfg.init, init_std=cfg.init_std,
                               perturb_std=cfg.perturb_std)
        _save(ipath, student.state(0))
    return JobSpec(str(exp.path), str(run_dir), C.to_dict(cfg), seed, str(tpath), str(ipath), f"seed_{seed}")

def load_config(exp_path: str | Path) -> TeacherStudentConfig:
    """The config of a stored teacher–student experiment."""
    exp = Experiment(Path(exp_path))
    if exp.kind != KIND:
        raise TicketlabError(f"{exp_path}: a {exp.kind} experiment, expected {KIND}")
    return C.from_dict(TeacherStudentConfig, exp.config, source=str(Path(exp_path) / "config.json"))



__all__ = ["KIND", "TeacherStudentConfig", "SCHEDULE_FIELDS", "seeds_of", "build_teacher", "datasets", "JobSpec",
           "prepare_run", "load_config"]
