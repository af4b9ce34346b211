"""Messages go through `logging` (the `ticketlab` logger hierarchy), bars through one helper.

No module below the api floor takes a `log` callback, and only `ticketlab.core.progress` imports
tqdm; the CLI prints a run's lines on stderr (not with --quiet), through `tqdm.write`; the
deprecated `api.*(log=...)` still receives them; worker processes show theirs when the CLI
configured logging; a library user gets nothing printed by default.
"""

from __future__ import annotations

import ast
import io
import logging
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from ticketlab import api
from ticketlab._floors import FLOORS, floor_of
from ticketlab.cli.commands import main
from ticketlab.core import progress
from ticketlab.experiments.lottery.trunk import LotteryConfig
from ticketlab.training.loop import TrainConfig

SRC = Path(__file__).resolve().parents[1] / "src"
API_FLOOR = next(i for i, names in enumerate(FLOORS) if "api" in names)


def modules():
    for path in sorted((SRC / "ticketlab").rglob("*.py")):
        parts = list(path.relative_to(SRC).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        yield ".".join(parts), path, ast.parse(path.read_text(), str(path))


def test_no_module_below_the_api_floor_takes_a_log_callback():
    found = []
    for name, path, tree in modules():
        if floor_of(name) >= API_FLOOR:
            continue
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
                a = node.args
                params = [p.arg for p in a.posonlyargs + a.args + a.kwonlyargs]
                if "log" in params:
                    found.append(f"{name}:{node.lineno} {getattr(node, 'name', 'lambda')}")
    assert not found, "log parameters below the api floor (use logging.getLogger(__name__)):\n" + "\n".join(found)


def test_only_the_progress_helper_imports_tqdm():
    found = []
    for name, _, tree in modules():
        for node in ast.walk(tree):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                     else [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            if any(n == "tqdm" or n.startswith("tqdm.") for n in names):
                found.append(name)
    assert set(found) == {"ticketlab.core.progress"}, found


TS = ["teacher-student", "--input-dim", "8", "--teacher-widths", "3", "--output-dim", "4", "--steps", "40",
      "--log-every", "20", "--seeds", "1", "--train-size", "100", "--eval-size", "200"]


def test_the_cli_prints_a_runs_lines_on_stderr_and_quiet_does_not(tmp_path, capsys):
    assert main([*TS, "--store", str(tmp_path / "a")]) == 0
    out, err = capsys.readouterr()
    assert "training teacher_student-" in err and "step 40: eval rel. MSE" in err
    assert "training" not in out and "success" in out
    assert main([*TS, "--store", str(tmp_path / "b"), "--quiet"]) == 0
    out, err = capsys.readouterr()
    assert err == "" and "success" in out
    # the command's set-up is undone when it returns (main may run in-process)
    assert not logging.getLogger("ticketlab").handlers and logging.getLogger("ticketlab").propagate


def test_cli_logging_writes_through_tqdm_above_a_live_bar(monkeypatch):
    from tqdm import tqdm

    with progress.cli_logging(quiet=True) as logger:
        assert logger.level == logging.WARNING
    with progress.cli_logging() as logger:
        (handler,) = logger.handlers
        assert isinstance(handler, progress._TqdmHandler) and logger.level == logging.INFO
        stream = io.StringIO()
        handler.stream = stream
        written = []
        original = tqdm.write
        monkeypatch.setattr(tqdm, "write", lambda s, file=None, **kw: (written.append(s), original(s, file=file, **kw)))
        b = progress.bar(10, file=stream, mininterval=0, desc="runs")
        b.update(3)
        logging.getLogger("ticketlab.engine.schedule").info("training %s", "r0/L1")
        b.close()
    assert written == ["training r0/L1"]
    # the bar was cleared, the line written on a line of its own, and the bar drawn again below it
    text = stream.getvalue()
    at = text.index("training r0/L1\n")
    assert "runs" in text[:at] and "3/10" in text[at:]


def test_a_library_user_sees_nothing_unless_they_configure_logging(tmp_path, capsys):
    train = TrainConfig(dataset="mnist1d", model="mlp", model_args={"widths": [16]}, iterations=50, batch_size=50,
                        eval_every=50)
    api.lottery(train, LotteryConfig(levels=1), store=tmp_path, progress=False)
    assert capsys.readouterr() == ("", "")
    got = []
    res = api.lottery(train, LotteryConfig(levels=2), store=tmp_path, progress=False, log=got.append)
    assert got == ["training r0/L2"] and len(res["rows"]) == 3
    # the deprecated callback is detached afterwards, the logger as it was
    assert not logging.getLogger("ticketlab").handlers and logging.getLogger("ticketlab").level == logging.NOTSET
    assert capsys.readouterr() == ("", "")


def test_worker_level_follows_the_cli_configuration():
    assert progress.worker_level() is None  # a library user: workers stay quiet
    with progress.cli_logging():
        assert progress.worker_level() == logging.INFO
        with progress.quiet():  # a sweep's trials
            assert progress.worker_level() == logging.WARNING
        assert progress.worker_level() == logging.INFO
    with progress.cli_logging(quiet=True):
        assert progress.worker_level() == logging.WARNING


WORKER_JOB = '''
import logging

def train(payloads):
    logging.getLogger("ticketlab.test").info("worker trains %s", payloads)
'''

WORKER_MAIN = '''
import sys
from ticketlab.core.progress import configure_logging
from ticketlab.engine import schedule
import job

if __name__ == "__main__":
    configure_logging()
    nodes = [schedule.Node(i, sys.argv[1] + f"/{i}", i) for i in range(2)]
    schedule.run([[n] for n in nodes], job.train, workers=2)
'''


def test_a_worker_processs_lines_show_where_the_parents_do(tmp_path):
    """Under the CLI's set-up, what a worker logs reaches stderr as the parent's lines do (a library
    user's workers stay quiet: `worker_level` is None, above)."""
    (tmp_path / "job.py").write_text(textwrap.dedent(WORKER_JOB))
    (tmp_path / "main.py").write_text(textwrap.dedent(WORKER_MAIN))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), str(SRC)])}
    p = subprocess.run([sys.executable, str(tmp_path / "main.py"), str(tmp_path)], env=env,
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    lines = [x for x in p.stderr.splitlines() if "train" in x]  # the parent's lines and each worker's
    assert sorted(lines) == ["training 0", "training 1", "worker trains [0]", "worker trains [1]"]
