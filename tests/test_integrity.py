"""The integrity manifest (issue 17): every artifact a run writes is recorded with its sha256 and
size, every read checks it, a damaged file raises one line naming it; stores without a manifest
stay readable; stray temp files are removed on the next run. Tiny budgets on MNIST-1D."""

import os

import pytest
import torch

from ticketlab import api
from ticketlab.core import integrity
from ticketlab.core.errors import DamagedError
from ticketlab.engine.results import run_rows
from ticketlab.experiments.lottery.trunk import LotteryConfig, final_weights, load_masks
from ticketlab.training.loop import TrainConfig
from ticketlab.training.rundir import RunDir

torch.set_num_threads(1)

TRAIN = TrainConfig(dataset="mnist1d", model="mlp", model_args={"widths": [32, 16]}, iterations=60,
                    batch_size=50, eval_every=30)


@pytest.fixture(scope="module")
def lottery_store(tmp_path_factory):
    root = tmp_path_factory.mktemp("store")
    res = api.lottery(TRAIN, LotteryConfig(levels=1), store=root, progress=False, checkpoint_every=30)
    return root, res["experiment"]


def _copy(lottery_store, tmp_path):
    import shutil
    root, exp = lottery_store
    shutil.copytree(root, tmp_path / "s")
    return tmp_path / "s", tmp_path / "s" / exp.split("/")[-1]


def test_every_artifact_is_in_the_manifest(lottery_store):
    _, exp = lottery_store
    level = RunDir(f"{exp}/replicate_0/level_1")
    man = integrity.read_manifest(level.path)
    assert set(man) == {"mask.pt", "snapshot_0.pt", "final.pt", "metrics.jsonl", "summary.json"}
    assert "checkpoint.pt" not in man  # deleted when the run finished, and forgotten
    for name, e in man.items():
        assert integrity.entry((level.path / name).read_bytes()) == e
    assert level.damaged() == []


def test_a_mask_replaced_on_disk_is_refused(lottery_store, tmp_path):
    """A valid-looking but different mask.pt (what zeroed bytes did in the issue) is not read as valid."""
    root, exp = _copy(lottery_store, tmp_path)
    path = exp / "replicate_0" / "level_1" / "mask.pt"
    masks = torch.load(path, weights_only=True)
    masks = {n: torch.zeros_like(m) for n, m in masks.items()}
    torch.save(masks, path)  # bypasses the manifest
    with pytest.raises(DamagedError, match=r"level_1/mask.pt is damaged: expected \d+ bytes"):
        load_masks(path)
    with pytest.raises(DamagedError, match="mask.pt is damaged"):
        run_rows(exp)
    with pytest.raises(DamagedError, match="mask.pt is damaged"):
        api.ls(store=root)


def _cut_metrics_line_is_refused(exp, match: str) -> None:
    """Cut the last line of level 1's metrics.jsonl; reading it must fail in one line matching `match`."""
    metrics = exp / "replicate_0" / "level_1" / "metrics.jsonl"
    metrics.write_text(metrics.read_text()[:-10])
    with pytest.raises(DamagedError, match=match):
        RunDir(metrics.parent).read_metrics()


def test_zeroed_and_truncated_files_are_refused(lottery_store, tmp_path):
    root, exp = _copy(lottery_store, tmp_path)
    final = exp / "replicate_0" / "level_0" / "final.pt"
    data = bytearray(final.read_bytes())
    data[len(data) // 2: len(data) // 2 + 64] = bytes(64)
    final.write_bytes(bytes(data))
    with pytest.raises(DamagedError, match="final.pt is damaged"):
        final_weights(final.parent)
    final.write_bytes(bytes(data[:100]))
    with pytest.raises(DamagedError, match="final.pt is damaged"):
        final_weights(final.parent)
    _cut_metrics_line_is_refused(exp, "metrics.jsonl is damaged")


def test_a_store_without_manifest_reads_unchecked_but_unreadable_files_still_fail_in_one_line(
        lottery_store, tmp_path):
    root, exp = _copy(lottery_store, tmp_path)
    for m in exp.glob("**/manifest.json"):
        m.unlink()
    assert len(run_rows(exp)) == 2  # an old store: read as before
    mask = exp / "replicate_0" / "level_1" / "mask.pt"
    torch.save([1, 2, 3], mask)  # not a dict of tensors
    with pytest.raises(DamagedError, match="mask.pt: expected a dict"):
        load_masks(mask)
    torch.save({"a": 1}, mask)
    with pytest.raises(DamagedError, match="mask.pt: expected a dict of tensors, found other values"):
        load_masks(mask)
    final = exp / "replicate_0" / "level_1" / "final.pt"
    final.write_bytes(final.read_bytes()[:200])
    with pytest.raises(DamagedError, match="final.pt: not a readable ticketlab state file"):
        final_weights(final.parent)
    _cut_metrics_line_is_refused(exp, "metrics.jsonl: line 3 is not a JSON row")


def test_a_rewritten_file_killed_before_its_manifest_entry_is_unchecked_not_damaged(tmp_path, monkeypatch):
    rd = RunDir(tmp_path).create()
    rd.save("checkpoint.pt", 1, model={"w": torch.ones(2)})
    calls = []
    real = integrity._atomic.write_json

    def killed_after_file(path, obj):  # the second manifest write (the new entry) never happens
        calls.append(path)
        if len(calls) == 2:
            raise KeyboardInterrupt
        real(path, obj)
    monkeypatch.setattr(integrity._atomic, "write_json", killed_after_file)
    with pytest.raises(KeyboardInterrupt):
        rd.save("checkpoint.pt", 2, model={"w": torch.zeros(2)})
    monkeypatch.undo()
    assert rd.load("checkpoint.pt")["iteration"] == 2  # the new file, whole, unchecked
    assert "checkpoint.pt" not in integrity.read_manifest(tmp_path)


def test_stray_temp_files_are_removed_on_the_next_run(tmp_path):
    (tmp_path / ".checkpoint.pt.abc123.tmp").write_bytes(b"x" * 100)
    (tmp_path / "data.part").write_bytes(b"x")
    (tmp_path / "final.pt").write_bytes(b"keep")
    RunDir(tmp_path).create()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["final.pt"]


def test_a_live_writers_temp_file_is_not_a_stray(tmp_path):
    """Two workers may write into one run folder at once (a level's mask: its ticket's worker and its
    control's worker); the one that starts the run must not delete the other's write in progress
    (a FileNotFoundError on its rename, seen in benchmarks/speed's IMP study with 2 workers)."""
    import subprocess, sys
    live = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    try:
        (tmp_path / f".mask.pt.{live.pid}-ab12cd.tmp").write_bytes(b"x")
        (tmp_path / f".manifest.json.{dead.pid}-ef34gh.tmp").write_bytes(b"x")
        with integrity._atomic.atomic_open(tmp_path / "final.pt") as f:  # this process's own write
            f.write(b"w")
            RunDir(tmp_path).create()
            assert [p.name for p in tmp_path.glob(f".final.pt.{os.getpid()}-*.tmp")]
        assert sorted(p.name for p in tmp_path.iterdir()) == [f".mask.pt.{live.pid}-ab12cd.tmp", "final.pt"]
    finally:
        live.kill()
        live.wait()
    RunDir(tmp_path).create()  # its writer gone: now a stray
    assert sorted(p.name for p in tmp_path.iterdir()) == ["final.pt"]


def test_a_lenet_checkpoint_reads_back_checked(tmp_path):
    """A 1 MB state file round-trips through the checked read (what that costs:
    benchmarks/reliability/hashed_read.py)."""
    from ticketlab.models import create_model
    model = create_model("lenet300_100", input_shape=(1, 28, 28), num_classes=10, seed=0)
    rd = RunDir(tmp_path).create()
    rd.save("final.pt", 0, model=model.state_dict())
    assert (tmp_path / "final.pt").stat().st_size > 1_000_000
    assert integrity.read_bytes(tmp_path / "final.pt") == (tmp_path / "final.pt").read_bytes()
    loaded = rd.load("final.pt")["model"]
    assert loaded.keys() == model.state_dict().keys()
    assert all(torch.equal(loaded[k], v) for k, v in model.state_dict().items())
