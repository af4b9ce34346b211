"""No traceback reaches a user (issue 17): the CLI's commands on a damaged store (garbage
config.json, a cut metrics.jsonl line, a truncated final.pt, a non-tensor or malicious pickle in
mask.pt, snapshot_0.pt or checkpoint.pt), with and without the integrity manifest (a store
written before it), end in one line and a non-zero status, or in correct output; an unexpected
error prints one line and "--debug"; a closed pipe ends quietly."""

import os
import shutil

import pytest
import torch

from ticketlab import api
from ticketlab.cli.commands import main
from ticketlab.experiments.lottery.trunk import LotteryConfig
from ticketlab.training.loop import TrainConfig

torch.set_num_threads(1)

FLAGS = ["--dataset", "mnist1d", "--model", "mlp", "--iterations", "60", "--eval-every", "30"]
TRAIN = TrainConfig(dataset="mnist1d", model="mlp", iterations=60, eval_every=30)


class Evil:
    def __reduce__(self):
        return (os.system, ("touch pwned",))


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    root = tmp_path_factory.mktemp("cli") / "s"
    lot = api.lottery(TRAIN, LotteryConfig(levels=1), store=root, progress=False)["experiment"]
    tr = api.train(TRAIN, store=root, progress=False)["experiment"]
    return root, os.path.basename(lot), os.path.basename(tr)


def _garbage_config(lot, tr):
    (lot / "config.json").write_text("garbage{")


def _cut_metrics(lot, tr):
    p = lot / "replicate_0" / "level_1" / "metrics.jsonl"
    p.write_text(p.read_text()[:-15])


def _truncated_final(lot, tr):
    p = lot / "replicate_0" / "level_1" / "final.pt"
    p.write_bytes(p.read_bytes()[:1000])


def _list_in_mask(lot, tr):
    torch.save({"fc": [1, 2]}, lot / "replicate_0" / "level_1" / "mask.pt")


def _evil_snapshot(lot, tr):
    torch.save({"model": Evil()}, lot / "replicate_0" / "level_0" / "snapshot_0.pt")


def _evil_checkpoint(lot, tr):
    shutil.copy(tr / "final.pt", tr / "checkpoint.pt")
    (tr / "summary.json").unlink()
    torch.save({"model": Evil(), "iteration": 30}, tr / "checkpoint.pt")


def _summary_of_another_shape(lot, tr):  # valid JSON, not a summary (unchecked without a manifest)
    (lot / "replicate_0" / "level_1" / "summary.json").write_text('{"final": "x", "early_stop": 5}')


COMMANDS = {
    "ls": ["ls"], "show": ["show", "lottery"], "report": ["report", "lottery", "-o", "r.html"],
    "verify": ["verify"],
    "extend": ["lottery", *FLAGS, "--levels", "2", "--quiet"],
    "resume": ["train", *FLAGS, "--quiet"],
}


@pytest.mark.parametrize("manifest", [True, False], ids=["manifest", "old-store"])
@pytest.mark.parametrize("damage", [_garbage_config, _cut_metrics, _truncated_final, _list_in_mask,
                                    _evil_snapshot, _evil_checkpoint, _summary_of_another_shape])
def test_a_damaged_store_never_shows_a_traceback(base, tmp_path, capsys, monkeypatch, damage, manifest):
    root = tmp_path / "s"
    shutil.copytree(base[0], root)
    lot, tr = root / base[1], root / base[2]
    if not manifest:
        for m in root.glob("**/manifest.json"):
            m.unlink()
    damage(lot, tr)
    monkeypatch.chdir(tmp_path)
    failed = 0
    for name, argv in COMMANDS.items():
        rc = main([*argv, "--store", str(root)])
        out, err = capsys.readouterr()
        assert "Traceback" not in err and "Traceback" not in out, (name, err)
        assert len(err.strip().splitlines()) <= 1, (name, err)
        if name == "verify":  # lists the damage on stdout, exits 1
            assert rc == 1 and "--repair" in out, (name, out)
        elif rc != 0:
            assert err.startswith("ticketlab: error: "), (name, err)
            failed += 1
        else:
            assert out.strip(), name
    assert not (tmp_path / "pwned").exists()
    assert failed >= 1  # the damage was noticed somewhere


def test_damage_is_never_a_silent_wrong_result(base, tmp_path, capsys):
    """With the manifest, a replaced mask fails ls and report (the issue showed 50.55 % for 51.70 %)."""
    root = tmp_path / "s"
    shutil.copytree(base[0], root)
    mask = root / base[1] / "replicate_0" / "level_1" / "mask.pt"
    m = torch.load(mask, weights_only=True)
    torch.save({k: torch.zeros_like(v) for k, v in m.items()}, mask)
    for argv in (["ls"], ["report", base[1], "-o", str(tmp_path / "r.html")]):
        assert main([*argv, "--store", str(root)]) == 2
        assert "mask.pt is damaged" in capsys.readouterr().err


def test_unexpected_errors_print_one_line_and_debug_shows_the_traceback(monkeypatch, capsys, tmp_path):
    from ticketlab import api as A

    def boom(**kw):
        raise FileNotFoundError(2, "No such file or directory", str(tmp_path / "x.bin"))
    monkeypatch.setattr(A, "ls", boom)
    assert main(["ls", "--store", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "FileNotFoundError" in err and "x.bin" in err and "--debug" in err
    with pytest.raises(FileNotFoundError):
        main(["--debug", "ls", "--store", str(tmp_path)])


def test_a_closed_pipe_exits_quietly(monkeypatch, capsys, tmp_path):
    class Closed:
        def write(self, s):
            raise BrokenPipeError

        def flush(self):
            pass

        def fileno(self):
            raise OSError("not a real stream")
    monkeypatch.setattr("sys.stdout", Closed())
    assert main(["ls", "--store", str(tmp_path)]) == 141
    assert capsys.readouterr().err == ""


def test_bad_paths_and_values_are_one_line_before_any_work(base, tmp_path, capsys):
    """A hostile check of every command (session 10) found these ending in Python's own error or
    accepted: each is now one line naming the flag or file, with status 2, before anything trains."""
    root, lot, _ = base
    afile, folder = tmp_path / "afile", tmp_path / "afolder"
    afile.write_text("x")
    folder.mkdir()
    (tmp_path / "latin1.toml").write_bytes(b"\xff\xfelr = 1\n")
    cases = {
        ("train", "--config", str(tmp_path / "latin1.toml")): "not UTF-8",
        ("train", "--config", str(folder)): "a folder, expected a TOML config file",
        ("train", *FLAGS, "--store", str(afile)): "a file, expected a folder",
        ("train", *FLAGS, "--store", str(afile / "sub")): "cannot create",
        ("show", lot, "--store", str(afile)): "a file, expected a folder",
        ("plot", lot, "-o", str(afile)): "a file, expected a folder",
        ("report", lot, "-o", str(folder)): "a folder, expected the path of a file",
        ("export", lot, "--level", "1", "-o", str(afile / "x.pt")): "is a file, so nothing can be written",
        ("export", lot, "--level", "1", "-o", str(tmp_path / "x.pt"), "--min-sparsity", "nan"): "min_sparsity",
        ("teacher-student", "--steps", "20", "--out", str(afile)): "a file, expected a folder",
        ("lottery", *FLAGS, "--exclude", "*", "--levels", "1"): "leave no parameter to prune",
        ("instability", lot, "--level", "1", "--rewind-iters", ""): "--rewind-iters",
        ("sparse-train", *FLAGS, "--sweep", "sparsity=0.5", "--sweep", "sparsity=0.6"): "swept twice",
        ("sparse-train", *FLAGS, "--sweep", "sparsity=0.5,,0.6"): "empty value",
        ("models", "zzz*"): "no registered model matches",
        ("transfer",): "give the source lottery experiment",
        ("instability", lot, "--level", "-1"): "level: got -1",
        ("train", "--init", "bogus"): "torch (or leave it unset)",
    }
    for argv, says in cases.items():
        store = () if "--store" in argv or argv[0] == "models" else ("--store", str(root))
        rc = main([*argv, *store])
        out, err = capsys.readouterr()
        assert rc == 2 and err.startswith("ticketlab: error: ") and len(err.strip().splitlines()) == 1, (argv, err)
        assert says in err, (argv, err)
        assert "Error:" not in err.split("ticketlab: error: ", 1)[1].split(" ")[0], (argv, err)  # not Python's own
    assert not list(root.glob("teacher_student-*")) and not list(tmp_path.glob("teacher_student-*"))
    from ticketlab.core.errors import ConfigError
    from ticketlab.reports.transfer_plots import check_density
    for bad in (-1, 0, 2, float("nan"), "0.05"):
        with pytest.raises(ConfigError, match="--density"):
            check_density(bad)
    check_density(0.05)
    check_density(1)


@pytest.mark.parametrize("argv,says", [
    (["export", "--level", "abc", "x"], "ticketlab export: error: argument --level: invalid int value: 'abc'"),
    (["train", "--no-such-flag", "3"], "ticketlab: error: unrecognized arguments: --no-such-flag 3 (`ticketlab train --help`"),
    (["instability", "x"], "ticketlab instability: error: the following arguments are required: --level"),
    (["nonsense-command"], "ticketlab: error: argument command: invalid choice: 'nonsense-command'"),
])
def test_argparse_errors_are_one_line_with_where_the_usage_is(argv, says, capsys):
    try:
        rc = main(argv)
    except SystemExit as e:  # argparse exits itself
        rc = e.code
    err = capsys.readouterr().err
    assert rc == 2 and err.count("\n") == 1 and err.startswith(says), err
    assert "--help`" in err and "usage:" not in err
