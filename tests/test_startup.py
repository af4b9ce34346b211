"""Start-up (issue 17, "Start-up"): `ticketlab train` does not import what it does not use —
matplotlib, scipy and mnist1d's generator (to name a cached dataset file), the sweep machinery and
the other commands' experiment modules. benchmarks/startup/run.py measures the time."""

import os
import subprocess
import sys
import textwrap
from importlib import metadata

import pytest

from ticketlab.data import generated


def test_the_known_mnist1d_cache_name_is_the_computed_one():
    version = metadata.version("mnist1d")
    if version not in generated._KNOWN_CACHE_NAMES:
        pytest.skip(f"mnist1d {version} has no pinned cache name; add it to generated._KNOWN_CACHE_NAMES")
    assert generated._KNOWN_CACHE_NAMES[version] == generated._computed_cache_name()


def test_train_start_up_imports_nothing_needless():
    code = ("import sys; from ticketlab.cli.commands import parser, _command; "
            "argv = ['train', '--iterations', '1']; parser(argv, only=_command(argv)).parse_args(argv); "
            "from ticketlab.data.generated import _mnist1d_cache_name; _mnist1d_cache_name(); "
            "import ticketlab.api; "
            "print(sorted(m for m in ('matplotlib', 'scipy', 'mnist1d.data', 'sklearn', 'ticketlab.sweep', "
            "'ticketlab.experiments.teacher_student', 'ticketlab.reports.plots') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def _compiler_module_before_first_adam_step() -> bool:
    """Whether torch._dynamo is imported before this process's first fused Adam step (which imports it
    otherwise, ≈1.1 s of CPU: benchmarks/startup); the step is taken, to show it runs in the worker."""
    import torch
    preloaded = "torch._dynamo" in sys.modules
    p = torch.nn.Parameter(torch.zeros(3))
    opt = torch.optim.Adam([p], fused=True)
    p.grad = torch.ones(3)
    opt.step()
    return preloaded and bool(p.detach().ne(0).all())


def test_workers_inherit_the_compiler_module_of_the_first_fused_adam_step():
    # issue #16: every worker paid ≈1.1 s of CPU importing torch._dynamo at its first Adam step;
    # the forkserver now imports it once, before it forks the workers
    from ticketlab.engine.parallel import make_executor
    ex = make_executor("process", 1)
    try:
        preloaded = ex.submit(_compiler_module_before_first_adam_step).result(timeout=300)
    finally:
        ex.shutdown()
    assert preloaded


def test_prestart_starts_the_forkserver_that_the_pool_then_forks_from():
    # issue #16: the lottery starts the forkserver before loading data and building its graph, so the
    # server's preload (≈2 s) overlaps that work instead of following it
    import multiprocessing
    if "forkserver" not in multiprocessing.get_all_start_methods():
        pytest.skip("no forkserver on this platform: workers spawn, and prestart does nothing")
    code = ("import os, multiprocessing.forkserver as fs; from ticketlab.engine import forkserver, parallel; "
            "forkserver.prestart(); pid = fs._forkserver._forkserver_pid; assert pid is not None; "
            "forkserver.prestart(); assert fs._forkserver._forkserver_pid == pid; "
            "ex = parallel.make_executor('process', 1); "
            "assert ex.submit(os.getppid).result(timeout=300) == pid; ex.shutdown(); print('ok')")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.stdout.strip() == "ok", out.stderr[-2000:]  # the worker's parent is the prestarted server


@pytest.mark.parametrize("argv, forks", [
    (["lottery", "--replicates", "3"], True),
    (["demo"], True),
    (["transfer", "abc123"], True),
    (["lottery", "--workers", "1"], False),
    (["lottery", "--workers=1"], False),
    (["lottery", "--workers", "2"], True),
    (["lottery", "--help"], False),
    # a lottery of one replicate without controls trains one run at a time, in this process
    (["lottery"], False),
    (["lottery", "--replicates", "1", "--iterations", "100"], False),
    (["lottery", "--controls", "reinit"], True),
    (["lottery", "--replicates=2"], True),
    (["lottery", "--config", "study.toml"], True),
    (["lottery", "--workers", "2", "--replicates", "1"], True),
    (["train", "--iterations", "1"], False),
    ([], False),
    # abbreviations, as argparse takes them
    (["lottery", "--replicate", "3"], True),
    (["lottery", "--contr=reinit"], True),
    (["lottery", "--work", "1", "--replicates", "3"], False),
    (["lottery", "--rep", "1", "--iter", "5"], False),
])
def test_the_command_line_starts_the_forkserver_only_for_commands_with_workers(argv, forks, monkeypatch):
    from ticketlab import cli
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1}, raising=False)
    assert cli.will_fork(argv) is forks
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0}, raising=False)
    # one CPU: one worker by default, nothing to fork, unless workers were asked for
    assert cli.will_fork(argv) is (forks and "--workers" in argv)


def test_the_console_entry_starts_the_forkserver_before_importing_torch():
    code = textwrap.dedent("""
        import sys
        from ticketlab import cli
        import ticketlab.engine.forkserver as f
        seen = []
        f.prestart = lambda: seen.append("torch" in sys.modules)
        cli.will_fork = lambda argv: True
        try:
            cli.main(["nosuchcommand"])
        except SystemExit:
            pass
        print(seen)
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.stdout.strip().splitlines()[-1:] == ["[False]"], out.stderr[-2000:]
