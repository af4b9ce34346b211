"""The run folder (ticketlab.training.rundir): atomic writes, the resume state's round trip, the resume
checks of one run and of a group, weights_only loading, the early-stopping rule, and stores written
with the old "step" key (read, and resumed bit for bit by the teacher-student loop)."""

import json
import pickle

import pytest
import torch

from crash import interrupt_teacher_student
from ticketlab.core import integrity
from ticketlab.training import rundir
from ticketlab.training.optim import make_optimizer
from ticketlab.training.rundir import AT_START, RunDir, early_stopping, finished, load_state, read_metrics, resume_group

torch.set_num_threads(1)


def trained(seed=0):
    """A small model, its Adam state after two steps, and masks."""
    torch.manual_seed(seed)
    model = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.ReLU(), torch.nn.Linear(3, 2))
    opt = make_optimizer("adam", model.parameters(), lr=0.01)
    for _ in range(2):
        opt.zero_grad()
        model(torch.randn(5, 4)).pow(2).mean().backward()
        opt.step()
    masks = {"0.weight": torch.rand(3, 4) < 0.5}
    return model, opt, masks


ROWS = [{"iter": i, "val_loss": 1.0 / (i + 1), "test_acc": i / 100} for i in (0, 10, 20, 30)]


def test_state_round_trip_and_weights_only(tmp_path):
    model, opt, masks = trained()
    rd = RunDir(tmp_path / "run").create()
    rng = torch.get_rng_state()
    rd.checkpoint(ROWS, 20, model=model.state_dict(), masks=masks, optimizer=opt.state_dict(),
                  hooks=[{"steps": torch.tensor(7)}], carry=[torch.ones(2)], elapsed=1.5)
    # the iteration of the checkpoint; metrics after it are dropped on resume
    assert rd.checkpoint_iter() == 20
    state, rows = rd.resume(masks)
    assert rows == ROWS[:3]
    assert state["iteration"] == 20 and state["elapsed"] == 1.5 and int(state["hooks"][0]["steps"]) == 7
    assert torch.equal(state["rng"], rng)
    assert all(torch.equal(state["model"][k], v) for k, v in model.state_dict().items())
    assert torch.equal(state["masks"]["0.weight"], masks["0.weight"])
    # the optimizer state loads back into a fresh optimizer and steps exactly as the original
    model2, _, _ = trained(seed=1)
    model2.load_state_dict(state["model"])
    opt2 = make_optimizer("adam", model2.parameters(), lr=0.01)
    opt2.load_state_dict(state["optimizer"])
    x = torch.randn(5, 4)
    for m, o in ((model, opt), (model2, opt2)):
        o.zero_grad()
        m(x).pow(2).mean().backward()
        o.step()
    assert all(torch.equal(a, b) for a, b in zip(model.parameters(), model2.parameters()))
    # every file of the folder loads with weights_only=True (no arbitrary unpickling)
    rd.save(rundir.snapshot_name(0), 0, model=model.state_dict(), masks={}, optimizer=None)
    for name in ("checkpoint.pt", "snapshot_0.pt"):
        torch.load(rd.path / name, weights_only=True)
    assert "optimizer" not in rd.load("snapshot_0.pt")  # None values are left out


def test_resume_rejects_other_masks_and_finish_marks_done(tmp_path):
    model, opt, masks = trained()
    rd = RunDir(tmp_path).create()
    assert rd.resume(masks) is None and not rd.done()  # a new run
    rd.checkpoint(ROWS, 10, model=model.state_dict(), masks=masks, optimizer=opt.state_dict())
    other = {"0.weight": ~masks["0.weight"]}
    with pytest.raises(ValueError, match="masks differ"):
        rd.resume(other)
    with pytest.raises(ValueError, match="masks differ"):
        rd.resume({"2.weight": torch.ones(2, 3, dtype=torch.bool)})
    summary = rd.finish(ROWS, {"iterations": 30, "early_stop": early_stopping(ROWS, "val_loss")})
    assert rd.done() and rd.summary() == summary and not (tmp_path / "checkpoint.pt").exists()
    assert read_metrics(tmp_path / "metrics.jsonl") == ROWS


def test_writes_are_atomic(tmp_path):
    rd = RunDir(tmp_path).create()
    rd.save("final.pt", 5, model={"w": torch.ones(2)})
    rd.write_metrics(ROWS)
    with pytest.raises((pickle.PicklingError, AttributeError, TypeError)):
        rd.save("final.pt", 6, model={"w": torch.zeros(2)}, bad=lambda: None)  # fails mid-write
    with pytest.raises(TypeError):
        rd.finish([{"iter": 1, "x": object()}], {})
    # the old files are whole, no temporary file is left, and the run is not marked done
    assert rd.load("final.pt")["iteration"] == 5 and torch.equal(rd.load("final.pt")["model"]["w"], torch.ones(2))
    assert rd.read_metrics() == ROWS and not rd.done()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["final.pt", "manifest.json", "metrics.jsonl"]


def test_old_step_key_reads_as_iter(tmp_path):
    # a teacher-student run folder as written before the keys were unified
    torch.save({"step": 100, "student": {"weights": [torch.ones(2, 2)]}, "elapsed": 1.0}, tmp_path / "checkpoint.pt")
    (tmp_path / "metrics.jsonl").write_text("".join(json.dumps({"step": i, "eval_mse": 1.0}) + "\n"
                                                    for i in (0, 100, 200)))
    rd = RunDir(tmp_path)
    assert rd.checkpoint_iter() == 100
    state, rows = rd.resume()
    assert state["iteration"] == 100 and "step" not in state
    assert rows == [{"iter": 0, "eval_mse": 1.0}, {"iter": 100, "eval_mse": 1.0}]
    assert [r["iter"] for r in rd.read_metrics()] == [0, 100, 200]


def test_group_checks(tmp_path, caplog):
    model, opt, masks = trained()
    a, b = RunDir(tmp_path / "a").create(), RunDir(tmp_path / "b").create()
    assert finished([a, b], "g") is None and resume_group([a, b], "g") is None
    st = dict(model=model.state_dict(), masks=masks, optimizer=opt.state_dict())
    # stopped between the group's first writes (or a store from before checkpoint.prev.pt): nothing
    # shared, so the group starts afresh, said in a warning, its checkpoints dropped
    a.checkpoint(ROWS, 10, **st)
    assert resume_group([a, b], "g") is None
    assert "no checkpoint in common (a: [10], b: none)" in caplog.text and not list(a.path.glob("checkpoint*"))
    for r in (a, b):
        r.checkpoint(ROWS, 10, **st)
    states, rows = resume_group([a, b], "g", [masks, masks])
    assert [s["iteration"] for s in states] == [10, 10] and rows == [ROWS[:2], ROWS[:2]]
    # stopped between the two runs' next writes: a is ahead, keeps 10 beside 20, and both resume from 10;
    # a's checkpoint.pt is rolled back to 10, so that its next write sets 10 aside again, not 20
    a.checkpoint(ROWS, 20, **st)
    assert a.resume()[0]["iteration"] == 20 and load_state(a.path / "checkpoint.prev.pt")["iteration"] == 10
    states, rows = resume_group([a, b], "g", [masks, masks])
    assert [s["iteration"] for s in states] == [10, 10] and rows == [ROWS[:2], ROWS[:2]]
    assert a.resume()[0]["iteration"] == 10
    a.checkpoint(ROWS, 20, **st)  # and stopped there a second time
    assert [s["iteration"] for s in resume_group([a, b], "g")[0]] == [10, 10]
    assert not a.damaged() and not b.damaged()  # the manifest followed every copy
    for r in (a, b):
        r.checkpoint(ROWS, 20, **st)
    a.finish(ROWS, {"n": 1})
    with pytest.raises(ValueError, match="some runs of the group are finished"):
        finished([a, b], "g")
    b.finish(ROWS, {"n": 2})
    assert finished([a, b], "g") == [{"n": 1}, {"n": 2}]
    assert not list(tmp_path.glob("[ab]/checkpoint*"))  # both resume points go when a run finishes


def test_the_previous_checkpoint_is_kept_without_ever_removing_the_current_one(tmp_path, monkeypatch):
    # checkpoint.pt is never missing: the one before is a hard link (or a copy), and the new one
    # replaces checkpoint.pt atomically; a stop in between leaves both holding the old state
    model, opt, masks = trained()
    st = dict(model=model.state_dict(), masks=masks, optimizer=opt.state_dict())
    a = RunDir(tmp_path / "a").create()
    a.checkpoint(ROWS, 10, **st)

    def stop(*args, **kw):
        raise KeyboardInterrupt
    monkeypatch.setattr(RunDir, "save", stop)
    with pytest.raises(KeyboardInterrupt):
        a.checkpoint(ROWS, 20, **st)
    monkeypatch.undo()
    assert [load_state(a.path / f)["iteration"] for f in ("checkpoint.pt", "checkpoint.prev.pt")] == [10, 10]
    assert not a.damaged() and a.resume()[0]["iteration"] == 10
    monkeypatch.setattr(integrity.os, "link", lambda *a: (_ for _ in ()).throw(OSError("no hard links")))
    a.checkpoint(ROWS, 20, **st)  # a file system without hard links: a copy
    assert load_state(a.path / "checkpoint.prev.pt")["iteration"] == 10 and not a.damaged()


def test_a_stop_inside_forget_leaves_an_unlisted_file_never_a_false_damage(tmp_path, monkeypatch):
    # the manifest entry goes before the file: a kill between the two must not make `verify` report a
    # missing file (and `verify --repair` then delete a finished run)
    rd = RunDir(tmp_path).create()
    rd.save("checkpoint.pt", 5, model={"w": torch.ones(2)})
    monkeypatch.setattr(type(tmp_path), "unlink", lambda self, missing_ok=False: (_ for _ in ()).throw(KeyboardInterrupt))
    with pytest.raises(KeyboardInterrupt):
        integrity.forget(tmp_path / "checkpoint.pt")
    monkeypatch.undo()
    assert (tmp_path / "checkpoint.pt").exists() and "checkpoint.pt" not in integrity.read_manifest(tmp_path)
    assert not rd.damaged()


def _stacked_fit(tmp_path, prefix, stops=()):
    """A 2-run stack of 80 steps, a checkpoint every 20, stopped by Ctrl-C between its two runs' checkpoint
    writes at each iteration of `stops` in turn (each then resumed), then run to the end; a stop at
    "finish" comes between its two runs' summaries."""
    from ticketlab.data import load_dataset
    from ticketlab.models import create_model
    from ticketlab.training.loop import Run, RunOptions, TrainConfig, fit_many
    from ticketlab.training.stacked import Stacked
    data = load_dataset("mnist1d")
    cfg = TrainConfig(dataset="mnist1d", model="mlp", iterations=80, batch_size=50, eval_every=20)
    opts = RunOptions(progress=False, checkpoint_every=20)
    real, real_finish = RunDir.checkpoint, RunDir.finish
    for at in [*stops, None]:
        def checkpoint(self, rows, iteration, **state):
            if iteration == at and self.path.name == f"{prefix}1":
                raise KeyboardInterrupt
            real(self, rows, iteration, **state)

        def finish(self, rows, summary, **kw):
            if at == "finish" and self.path.name == f"{prefix}1":
                raise KeyboardInterrupt
            return real_finish(self, rows, summary, **kw)
        RunDir.checkpoint, RunDir.finish = checkpoint, finish
        ms = [create_model("mlp", input_shape=(40,), num_classes=10, seed=s, widths=[32]) for s in range(2)]
        try:
            out = fit_many([Run(tmp_path / f"{prefix}{s}", model=ms[s], data_seed=s) for s in range(2)], data, cfg,
                           Stacked(ms), options=opts)
        except KeyboardInterrupt:
            continue
        finally:
            RunDir.checkpoint, RunDir.finish = real, real_finish
    return out


@pytest.mark.parametrize("stops", [(40,), (40, 40), (20,), (40, 60), (60, "finish"), (60, 60)],
                         ids=["once", "twice-at-one-place", "at-the-first-checkpoint", "at-two-places",
                              "between-two-summaries", "twice-at-the-last-checkpoint"])
def test_a_stack_stopped_between_its_runs_checkpoint_writes_resumes_bit_for_bit(tmp_path, stops):
    # the group writes its runs' checkpoints one after the other; a Ctrl-C between two of them left
    # the runs one checkpoint apart and the group could never resume (found by a hostile CLI check)
    _stacked_fit(tmp_path, "ref")
    out = _stacked_fit(tmp_path, "cut", stops)
    for s in range(2):
        a, b = (load_state(tmp_path / f"{t}{s}" / "final.pt")["model"] for t in ("ref", "cut"))
        assert all(torch.equal(a[n], b[n]) for n in a)
        assert read_metrics(tmp_path / f"cut{s}" / "metrics.jsonl") == read_metrics(tmp_path / f"ref{s}" / "metrics.jsonl")
        assert out[s]["iterations"] == 80 and not list((tmp_path / f"cut{s}").glob("checkpoint*"))
        assert not list((tmp_path / f"cut{s}").glob(".*")), "a temp file left behind"
        assert not RunDir(tmp_path / f"cut{s}").damaged()


def test_early_stopping_rule():
    rows = [{"iter": 0, "v": 2.0}, {"iter": 5, "v": 1.0}, {"iter": 10, "v": 1.0}, {"iter": 15, "v": 3.0}]
    assert early_stopping(rows, "v")["iter"] == 5  # lowest, first on ties
    assert early_stopping(rows, "v", higher_is_better=True)["iter"] == 15
    rows[3]["v"] = 2.0
    rows[2]["v"] = 2.0
    assert early_stopping(rows, "v", higher_is_better=True)["iter"] == 10  # highest after the start, first on ties


def test_early_stopping_never_selects_the_start():
    # the untrained start is best on the metric, at iteration 0 and at a rewind point alike
    for start in (0, 40):
        rows = [{"iter": start, "v": 0.1}, {"iter": start + 5, "v": 0.9}, {"iter": start + 10, "v": 0.5}]
        best = early_stopping(rows, "v")
        assert best["iter"] == start + 10 and AT_START not in best
        assert early_stopping([{**r, "v": -r["v"]} for r in rows], "v", higher_is_better=True)["iter"] == start + 10


def test_early_stopping_from_an_iteration():
    # a network that takes its final form at iteration 8 (GMP's last pruning step) is judged from there
    rows = [{"iter": 0, "v": 2.0}, {"iter": 5, "v": 0.5}, {"iter": 10, "v": 1.5}, {"iter": 15, "v": 1.0}]
    assert early_stopping(rows, "v")["iter"] == 5
    assert early_stopping(rows, "v", select_from=8)["iter"] == 15
    assert early_stopping(rows, "v", select_from=10)["iter"] == 15  # the row at select_from is a candidate
    assert early_stopping(rows[:3], "v", select_from=10)["iter"] == 10
    # a network final only after the last evaluation (GMP ending on the run's last step): the last row,
    # never the untrained start
    assert early_stopping(rows, "v", select_from=16)["iter"] == 15


def test_early_stopping_with_only_the_start_says_so(caplog):
    with caplog.at_level("WARNING", logger="ticketlab.training.rundir"):
        best = early_stopping([{"iter": 7, "v": 0.3}], "v")
    assert best == {"iter": 7, "v": 0.3, AT_START: True} and "no evaluation after the run's start" in caplog.text
    # a run that diverged at once has no usable row after its start either
    best = early_stopping([{"iter": 0, "v": 0.3}, {"iter": 5, "v": None}], "v")
    assert best["iter"] == 0 and best[AT_START] is True


def test_optimizer_factory():
    p = [torch.nn.Parameter(torch.zeros(3))]
    sgd = make_optimizer("sgd", p, lr=0.1, momentum=0.9, nesterov=True, weight_decay=1e-4)
    assert isinstance(sgd, torch.optim.SGD) and sgd.defaults["nesterov"] and sgd.defaults["momentum"] == 0.9
    plain = make_optimizer("sgd", p, lr=0.1)
    assert plain.defaults["momentum"] == 0 and not plain.defaults["nesterov"]
    adamw = make_optimizer("adamw", p, lr=0.1, weight_decay=0.01, betas=(0.9, 0.98))
    assert type(adamw) is torch.optim.AdamW and adamw.defaults["fused"] and adamw.defaults["betas"] == (0.9, 0.98)
    assert type(make_optimizer("adam", p, lr=0.1)) is torch.optim.Adam


def test_teacher_student_store_with_old_keys_resumes_exactly(tmp_path):
    """A teacher-student run interrupted under the old format ("step" in checkpoint.pt and in the
    metrics rows) resumes to the weights of an uninterrupted run, and then writes "iter"."""
    from ticketlab.engine.store import Store
    from ticketlab.experiments.teacher_student.experiment import TeacherStudentConfig, prepare_run, run

    cfg = TeacherStudentConfig(input_dim=12, teacher_widths=(4,), output_dim=6, steps=300, log_every=100, seeds=1,
                               train_size=500, eval_size=600, batch_size=8, lr=0.02)
    whole = run(cfg, store=tmp_path / "a")["experiments"][0]

    exp = Store(tmp_path / "b").experiment("teacher_student", cfg)
    interrupt_teacher_student([prepare_run(exp, cfg, 0)], at_step=200, checkpoint_every=100)
    # rewrite the checkpoint and the rows as the old loop wrote them (with no manifest: it came later)
    d = exp.path / "seed_0"
    (d / "manifest.json").unlink()
    st = torch.load(d / "checkpoint.pt", weights_only=True)
    st["step"] = st.pop("iteration")
    del st["rng"]
    torch.save(st, d / "checkpoint.pt")
    rows = [json.loads(x) for x in (d / "metrics.jsonl").read_text().splitlines()]
    (d / "metrics.jsonl").write_text("".join(json.dumps({"step": r.pop("iter"), **r}) + "\n" for r in rows))
    run(cfg, store=tmp_path / "b")
    a = load_state(f"{whole}/seed_0/final.pt")["student"]["weights"]
    b = load_state(d / "final.pt")["student"]["weights"]
    assert all(torch.equal(u, v) for u, v in zip(a, b))
    assert [r["iter"] for r in read_metrics(d / "metrics.jsonl")] == [0, 100, 200, 300]
    assert "step" not in (d / "metrics.jsonl").read_text()
