"""The GPU benchmark (benchmarks/gpu/run.sh, issue 16) runs end to end: `--device cpu --quick` checks
every section's code at reduced sizes, so that a change to the library cannot break the one command
that a lent GPU machine runs (session 8 found section 6 reading a summary field renamed earlier).
The end-to-end run is slow (≈80 s on 2 cores): `pytest -m slow`; the check that run.sh names every file
of CUDA tests is not."""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

import requires

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_the_gpu_benchmark_runs_every_section_on_the_cpu(tmp_path):
    data = os.environ.get("TICKETLAB_DATA", str(ROOT.parent / "shared" / "data"))
    requires.data((Path(data) / "mnist").is_dir() and (Path(data) / "fashion-mnist").is_dir(),
                  f"MNIST and Fashion-MNIST are not in {data} (set TICKETLAB_DATA)")
    out = tmp_path / "results.md"
    env = dict(os.environ, PYTHON=sys.executable, OMP_NUM_THREADS="1", TICKETLAB_CACHE=str(tmp_path / "cache"))
    r = subprocess.run(["bash", str(ROOT / "benchmarks/gpu/run.sh"), data, "--device", "cpu", "--quick",
                        "--out", str(out)], capture_output=True, text=True, env=env, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    text = out.read_text()
    assert "incomplete" not in text
    for section in range(1, 10):
        assert f"## {section}. " in text, section
    assert "the commands do not stack Conv-4 here" in text or "the commands stack Conv-4 here" in text


def test_run_sh_runs_every_file_of_gpu_marked_tests():
    # run.sh names the files (collecting every test module would need every optional extra on the GPU
    # machine); a new file of CUDA tests must be added there, or the lent GPU never runs it
    script = (ROOT / "benchmarks/gpu/run.sh").read_text()
    named = {p for p in script.split() if p.startswith("tests/test_") and p.endswith(".py")}
    marked = {f"tests/{p.name}" for p in (ROOT / "tests").glob("test_*.py")
              if re.search(r"^from gpu_marks import", p.read_text(), re.M)}
    assert named == marked
