"""The damaged-store matrix and the bad-input list of `run.py`, on HEAD 1d2429c and on this checkout.

    OMP_NUM_THREADS=1 TICKETLAB_DATA=../shared/data python benchmarks/reliability/against_1d2429c.py [--out DIR]

Checks out 1d2429c into a temporary git worktree (removed afterwards), runs `run.py --only damage,bad`
once with PYTHONPATH at its src/ and once at this checkout's, and prints the counts of
benchmarks/reliability/against_1d2429c.md: silent wrong results, tracebacks and one-line errors.
The old code writes its MNIST-1D cache into the data folder, so both runs read a temporary copy of
`$TICKETLAB_DATA/mnist1d` (the data folder is never written) and cache into a temporary folder.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
OLD = "1d2429c"


def counts(res: dict) -> dict:
    """The figures of one run: silent wrong results (a damaged-store cell whose output differs from the
    clean store's with rc 0, `verify` missing a damage, a bad input accepted), tracebacks, one-line
    errors (including the new CLI's one-line catch-all, counted apart as `unexpected`)."""
    d, b = res["damage"]["tally"], res["bad"]["tally"]
    get = lambda t, k: t.get(k, 0)  # noqa: E731
    return {"damage_cells": res["damage"]["cells"], "bad_inputs": res["bad"]["inputs"],
            "silent_wrong": get(d, "differs") + get(d, "silent") + get(b, "accepted"),
            "tracebacks": get(d, "traceback") + get(b, "traceback"),
            "one_line_errors": get(d, "error") + get(b, "error"),
            "unexpected_one_line": get(d, "unexpected") + get(b, "unexpected"),
            "multi_line": get(d, "multi-line") + get(b, "multi-line"),
            "verify_reported": get(d, "reported"), "warned": get(d, "warned"), "ok": get(d, "ok"),
            "damage_tally": d, "bad_tally": b, "seconds": res["damage"]["seconds"] + res["bad"]["seconds"]}


def run_once(src: Path, out: Path, data: Path, cache: Path) -> dict:
    env = {**os.environ, "PYTHONPATH": str(src), "TICKETLAB_DATA": str(data), "TICKETLAB_CACHE": str(cache),
           "OMP_NUM_THREADS": "1"}
    subprocess.run([sys.executable, str(HERE / "run.py"), "--only", "damage,bad", "--out", str(out)], env=env,
                   check=True, stdout=subprocess.DEVNULL, cwd=out.parent)
    return json.loads((out / "reliability.json").read_text())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="against-out")
    ns = ap.parse_args()
    out = Path(ns.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix="against-"))
    old = tmp / "old1d"
    subprocess.run(["git", "-C", str(REPO), "worktree", "add", "--detach", str(old), OLD], check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        data = tmp / "data"
        shutil.copytree(Path(os.environ.get("TICKETLAB_DATA", "data")) / "mnist1d", data / "mnist1d")
        res = {}
        for name, src in ((OLD, old / "src"), ("this checkout", REPO / "src")):
            shutil.rmtree(tmp / "cache", ignore_errors=True)
            r = run_once(src, out / name.replace(" ", "_"), data, tmp / "cache")
            res[name] = counts(r)
            res[name]["findings"] = {"damage": r["damage"]["findings"], "bad": r["bad"]["findings"]}
            print(name, json.dumps({k: v for k, v in res[name].items() if k != "findings"}), flush=True)
        (out / "against.json").write_text(json.dumps(res, indent=1))
    finally:
        subprocess.run(["git", "-C", str(REPO), "worktree", "remove", "--force", str(old)], check=False)
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
