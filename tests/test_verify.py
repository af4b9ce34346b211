"""`ticketlab verify` (issue 17): a whole store checked against its manifests; each damaged file
listed with the runs derived from it (later levels, their controls, transfer runs that link it);
`--repair` removes them all, and the next run recomputes them bit-identically (same stack)."""

import json
import shutil
from pathlib import Path

import pytest
import torch

from ticketlab import api
from ticketlab.cli.commands import main
from ticketlab.experiments.lottery.trunk import LotteryConfig
from ticketlab.experiments.verify import derived
from ticketlab.engine.store import Store
from ticketlab.training.loop import TrainConfig, load_state

torch.set_num_threads(1)

TRAIN = TrainConfig(dataset="mnist1d", model="mlp", model_args={"widths": [32, 16]}, iterations=60,
                    batch_size=50, eval_every=30)
LOT = LotteryConfig(levels=2, controls=("reinit",))


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    root = tmp_path_factory.mktemp("verify")
    exp = api.lottery(TRAIN, LOT, store=root, progress=False)["experiment"]
    return root, exp


def test_a_clean_store_verifies(store, capsys):
    root, _ = store
    assert api.verify(store=root) == []
    assert main(["verify", "--store", str(root)]) == 0
    assert "every file checks out" in capsys.readouterr().out


def test_damage_lists_what_derives_from_it_and_repair_recomputes_it_bit_identically(store, tmp_path, capsys):
    root = tmp_path / "s"
    shutil.copytree(store[0], root)
    exp = root / store[1].split("/")[-1]
    before = load_state(exp / "replicate_0" / "level_2" / "final.pt")["model"]
    level1 = exp / "replicate_0" / "level_1" / "final.pt"
    data = bytearray(level1.read_bytes())
    data[-200:-100] = bytes(100)
    level1.write_bytes(bytes(data))
    rows = api.verify(store=root)
    assert len(rows) == 1 and rows[0]["file"] == "replicate_0/level_1/final.pt"
    assert rows[0]["derived"] == [f"{exp.name}/replicate_0/{d}" for d in
                                  ("level_1", "reinit_0/level_1", "level_2", "reinit_0/level_2")]
    assert main(["verify", "--store", str(root)]) == 1
    out = capsys.readouterr().out
    assert "level_1/final.pt" in out and "--repair" in out
    assert main(["verify", "--repair", "--store", str(root)]) == 0
    assert not (exp / "replicate_0" / "level_1").exists() and (exp / "replicate_0" / "level_0").exists()
    log = [json.loads(x) for x in (root / "repairs.jsonl").read_text().splitlines()]
    # one worker trains a level's ticket and reinit control as one stack (issue #18, point 6)
    assert len(log) == 4 and all(e["trained_with"] == 2 for e in log)
    assert api.verify(store=root) == []
    api.lottery(TRAIN, LOT, store=root, progress=False)  # recomputes what was removed
    after = load_state(exp / "replicate_0" / "level_2" / "final.pt")["model"]
    assert all(torch.equal(before[k], after[k]) for k in before)


def test_old_store_files_without_manifest_are_checked_by_reading_them(store, tmp_path):
    root = tmp_path / "s"
    shutil.copytree(store[0], root)
    exp = root / store[1].split("/")[-1]
    for m in exp.glob("**/manifest.json"):
        m.unlink()
    assert api.verify(store=root) == []
    (exp / "replicate_0" / "level_2" / "metrics.jsonl").write_text('{"iter": 0, "test_')
    rows = api.verify(store=root)
    assert [r["file"] for r in rows] == ["replicate_0/level_2/metrics.jsonl"]
    assert "line 1 is not a JSON row" in rows[0]["problem"]


def test_transfer_runs_that_link_a_damaged_level_derive_from_it(tmp_path):
    src = tmp_path / "lottery-abc"
    tr = tmp_path / "transfer-def"
    for d in ("replicate_0/level_0", "replicate_0/level_1", "replicate_1/level_1"):
        (src / d).mkdir(parents=True)
        (tr / d).mkdir(parents=True)
    for e in (src, tr):
        (e / "config.json").write_text("{}")
    (tr / "transfer.json").write_text(json.dumps({"source": "lottery-abc"}))
    got = derived(Store(tmp_path), src, src / "replicate_0" / "level_1" / "mask.pt")
    assert got == [src / "replicate_0/level_1", tr / "replicate_0/level_1"]
    assert derived(Store(tmp_path), src, src / "config.json") == [src]
    rewind = src / "replicate_0" / "instability" / "rewind_40"
    assert derived(Store(tmp_path), src, rewind / "check.json") == [rewind]  # not the whole replicate


STACKED = LotteryConfig(levels=2, controls=("reinit",), replicates=2)  # level L's 4 rewound runs: one stack of 4


@pytest.mark.parametrize("damage", ["delete summary", "zero final"])
def test_a_repaired_run_is_recomputed_in_its_original_stack_bit_identically(tmp_path, caplog, damage):
    """Issue 17: a stacked run's summary records its stack; after `verify --repair` the lottery
    re-forms that stack (the stored stack-mates train again in scratch, their stored files untouched),
    so every recomputed run is bit-identical to the original, even when its own summary was lost."""
    import logging
    root = tmp_path / "s"
    exp = Path(api.lottery(TRAIN, STACKED, store=root, progress=False)["experiment"])
    level1 = exp / "replicate_0" / "level_1"
    assert json.loads((level1 / "summary.json").read_text())["stack"] == [  # one worker: the level in one stack
        "replicate_0/level_1", "replicate_1/level_1", "replicate_0/reinit_0/level_1", "replicate_1/reinit_0/level_1"]
    finals = {p.parent: load_state(p)["model"] for p in exp.glob("replicate_0/**/level_[12]/final.pt")}
    mates = {p: (p.read_bytes(), p.stat().st_mtime_ns) for p in exp.glob("replicate_1/**/*") if p.is_file()}
    if damage == "delete summary":
        (level1 / "summary.json").unlink()
    else:
        f = level1 / "final.pt"
        f.write_bytes(f.read_bytes()[:-300] + bytes(300))
    removed = api.verify(store=root, repair=True)[0]["derived"]
    assert len(removed) == 4 and not level1.exists()
    caplog.set_level(logging.INFO, logger="ticketlab")
    api.lottery(TRAIN, STACKED, store=root, progress=False)
    # the 4 removed runs (replicate 0's ticket and reinit at levels 1, 2) replay in 2 stacks: one per level
    assert sum("in the stack it first trained in" in r.message for r in caplog.records) == 2
    for run, before in finals.items():
        after = load_state(run / "final.pt")["model"]
        assert all(torch.equal(before[k], after[k]) for k in before), run
    assert {p: (p.read_bytes(), p.stat().st_mtime_ns) for p in mates} == mates  # the mates' files untouched
    for run in finals:  # each recomputed run says so, and that it was replayed
        assert json.loads((run / "summary.json").read_text())["recomputed"] == {"replayed": True}
    assert not (exp / ".replay").exists() and api.verify(store=root) == []


def test_a_recomputed_run_that_was_not_replayed_is_marked(tmp_path):
    """Issue 17: teacher-student runs are not replayed in their original stack, so a run recomputed
    after `verify --repair` is marked `recomputed: {replayed: false}` (it may differ in the last bits)."""
    from ticketlab.experiments.teacher_student.spec import TeacherStudentConfig
    from test_teacher_student import TINY
    cfg = TeacherStudentConfig(**TINY)
    root = tmp_path / "s"
    exp = Path(api.teacher_student(cfg, store=root, out=tmp_path / "out")["experiments"][0])
    (exp / "seed_0" / "summary.json").unlink()
    assert [Path(p).name for p in api.verify(store=root, repair=True)[0]["derived"]] == ["seed_0"]
    api.teacher_student(cfg, store=root, out=tmp_path / "out")
    assert json.loads((exp / "seed_0" / "summary.json").read_text())["recomputed"] == {"replayed": False}
    assert "recomputed" not in json.loads((exp / "seed_1" / "summary.json").read_text())
