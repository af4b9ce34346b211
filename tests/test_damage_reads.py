"""Found by benchmarks/reliability (issue 17): a stored file that is missing, and a damaged
config.json or summary.json read by the plots and the report, end in one line naming the file
(a DamagedError), not in the CLI's catch-all for unexpected errors; `verify` lists a deleted
config.json (the experiment `ls` no longer shows) and a run folder's deleted manifest.json."""

import os

import pytest
import torch

from ticketlab import api
from ticketlab.cli.commands import main
from ticketlab.experiments.lottery.trunk import LotteryConfig
from ticketlab.training.loop import TrainConfig

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    root = tmp_path_factory.mktemp("dmg") / "s"
    api.lottery(TrainConfig(iterations=20, eval_every=10, train_fraction=0.3), LotteryConfig(levels=1),
                store=root, progress=False)
    return root


@pytest.mark.parametrize("damage, argv", [
    ("replicate_0/level_1/mask.pt", ["ls"]),
    ("replicate_0/level_1/mask.pt", ["plot", "EXP", "-o", "OUT"]),
    ("config.json", ["plot", "EXP", "-o", "OUT"]),
    ("replicate_0/level_1/summary.json", ["report", "EXP", "-o", "OUT/r.html"]),
])
def test_damaged_reads_are_one_line(store, tmp_path, capsys, damage, argv):
    import shutil
    s = tmp_path / "s"
    shutil.copytree(store, s)
    exp = next(s.iterdir())
    p = exp / damage
    if damage.endswith(".pt"):
        p.unlink()
    else:
        p.write_bytes(p.read_bytes()[: len(p.read_bytes()) // 2])
    argv = [str(exp) if a == "EXP" else str(tmp_path / "out") if a == "OUT" else
            str(tmp_path / "out" / "r.html") if a == "OUT/r.html" else a for a in argv]
    rc = main(argv + ["--store", str(s)])
    err = capsys.readouterr().err
    assert rc == 2, err  # a known error (DamagedError), not the catch-all (rc 1)
    assert "--debug" not in err and os.path.basename(damage) in err and len(err.strip().splitlines()) == 1


@pytest.mark.parametrize("gone", ["config.json", "replicate_0/level_1/manifest.json"])
def test_verify_flags_a_deleted_config_or_manifest(store, tmp_path, gone):
    import shutil
    from ticketlab.experiments.verify import verify
    s = tmp_path / "s"
    shutil.copytree(store, s)
    exp = next(s.iterdir())
    (exp / gone).unlink()
    [d] = verify(store=s)
    assert d.file == exp / gone and d.problem.startswith("missing")


@pytest.mark.parametrize("gone", ["config.json", "replicate_0/level_1/summary.json", "replicate_0/level_0/summary.json"])
def test_ls_warns_about_a_deleted_config_or_summary(store, tmp_path, capsys, gone):
    """`ls` says, in one line per run and without a traceback, that a deleted config.json hides an
    experiment or a deleted summary.json drops a run from the count; `verify` lists it as damaged."""
    import shutil
    from ticketlab.experiments.verify import verify
    s = tmp_path / "s"
    shutil.copytree(store, s)
    exp = next(s.iterdir())
    (exp / gone).unlink()
    rc = main(["ls", "--store", str(s)])
    cap = capsys.readouterr()
    assert rc in (0, None) and "Traceback" not in cap.err
    [line] = cap.err.strip().splitlines()
    folder = (exp / gone).parent
    assert line.startswith(f"{folder}: {os.path.basename(gone)} is missing") and "ticketlab verify" in line
    assert any(d.file == exp / gone and d.problem.startswith("missing") for d in verify(store=s))
    main(["ls", "--store", str(store)])  # the undamaged store: no warning
    assert capsys.readouterr().err == ""
