"""Reliability benchmark of the results store (issue 17; docs/architecture/store.md): not run in CI.

    OMP_NUM_THREADS=1 TICKETLAB_DATA=../shared/data python benchmarks/reliability/run.py [--kills 10] [--out DIR]

Six trials, each on tiny MNIST-1D configs so that the whole run takes minutes:
1. kill -9: a lottery with a control is killed at a random moment (SIGKILL) and resumed, `--kills`
   times; every run's final weights and summary (wall times aside) must equal an uninterrupted
   run's, bit for bit, and no temp file may outlive the resume;
2. a damaged store: each damage (truncate, zero bytes, cut lines, delete, garbage) of each kind of
   stored file, under every command that reads it (ls, show, report, plot, verify, lottery extension,
   export); an outcome is "error" (one line, rc != 0), "ok" (rc 0, output as on the clean store),
   "differs" (rc 0, other output: a silent wrong result unless it is verify reporting the damage),
   "warned" (rc 0, other output, with a warning on stderr saying why),
   "unexpected" (the CLI's catch-all line: a bug) or "traceback";
3. bad inputs (>= 80) across commands: each must be a one-line error, with no traceback;
4. two processes on one experiment: the second is refused by the lock;
5. a sweep with a failing trial (a diverging learning rate): the other trials finish, the failure
   is one line in the sweep's table;
6. a stack stopped between its runs' checkpoint writes (session 10): a 2-replicate sparse-train, whose
   replicates train as one stack and write a checkpoint every 10 steps, is stopped twice, by Ctrl-C
   (SIGINT) or kill -9, each time the moment one run's checkpoint is newer than the other's (watched
   from outside), then run to the end; every final must equal an uninterrupted run's, bit for bit. The
   stops that left the runs' checkpoints at different iterations are counted: before session 10 such
   a stack never resumed.
Prints a JSON summary and writes it to OUT/reliability.json.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import torch

try:
    from ticketlab.cli.commands import main
except ImportError:  # the code before the layers (1d2429c: ticketlab/cli.py), for against_1d2429c.py
    from ticketlab.cli import main

PY = sys.executable
TRAIN = ["--iterations", "60", "--eval-every", "20", "--batch-size", "50", "--train-fraction", "0.3"]
LOTTERY = ["lottery", *TRAIN, "--levels", "2", "--controls", "reinit", "--workers", "1", "--quiet"]


def cli(argv: list[str]) -> tuple[int, str, str]:
    """Run the CLI in this process: (rc, stdout, stderr)."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            rc = main(argv)
        except SystemExit as e:  # argparse
            rc = e.code if isinstance(e.code, int) else 2
        except BaseException:  # noqa: BLE001 — anything escaping main() is a finding
            import traceback
            traceback.print_exc(file=err)
            rc = -1
    return rc or 0, out.getvalue(), err.getvalue()


def outcome(rc: int, out: str, err: str, clean: str | None = None) -> str:
    """Classify one command's result (see the module docstring)."""
    if "Traceback" in err or "Traceback" in out:
        return "traceback"
    if "--debug for the traceback" in err:
        return "unexpected"
    if rc != 0:
        return "error" if len([l for l in err.strip().splitlines() if l.startswith("ticketlab")]) == 1 else "multi-line"
    return "ok" if clean is None or out == clean else "differs"


def final_tensors(exp: Path) -> dict:
    """Every run's final weights and summary (wall time and elapsed dropped), by relative path."""
    out = {}
    for f in sorted(exp.rglob("final.pt")):
        out[str(f.relative_to(exp))] = torch.load(f, weights_only=True)["model"]
        s = json.loads((f.parent / "summary.json").read_text())
        for k in ("wall_time_s", "stack_wall_time_s", "stack_cpu_time_s"):  # timings differ between runs
            s.pop(k, None)
        out[str(f.relative_to(exp)) + ":summary"] = s
    return out


def same(a: dict, b: dict) -> bool:
    if a.keys() != b.keys():
        return False
    for k in a:
        if isinstance(a[k], dict) and all(isinstance(v, torch.Tensor) for v in a[k].values()):
            if a[k].keys() != b[k].keys() or not all(torch.equal(a[k][n], b[k][n]) for n in a[k]):
                return False
        elif a[k] != b[k]:
            return False
    return True


def kill_trials(root: Path, n: int, rng: random.Random) -> dict:
    env = dict(os.environ)
    ref = root / "ref"
    t0 = time.perf_counter()
    subprocess.run([PY, "-m", "ticketlab", *LOTTERY, "--store", str(ref)], env=env, check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    span = time.perf_counter() - t0
    want = final_tensors(next(ref.iterdir()))
    trials = []
    for i in range(n):
        store = root / f"kill{i}"
        at = rng.uniform(0.3 * span, 0.95 * span)  # past the start-up, before the end
        p = subprocess.Popen([PY, "-m", "ticketlab", *LOTTERY, "--store", str(store)], env=env,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(at)
        killed = p.poll() is None
        if killed:
            p.send_signal(signal.SIGKILL)
        p.wait()
        done_before = len(list(store.rglob("summary.json")))
        r = subprocess.run([PY, "-m", "ticketlab", *LOTTERY, "--store", str(store)], env=env,
                           stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        exp = next(store.iterdir())
        tmp = [str(f) for f in store.rglob("*.tmp")]
        trials.append({"kill_at_s": round(at, 2), "killed": killed, "runs_done_at_kill": done_before,
                       "resume_rc": r.returncode, "identical": r.returncode == 0 and same(want, final_tensors(exp)),
                       "temp_files_left": tmp})
    return {"uninterrupted_s": round(span, 1), "trials": trials,
            "killed": sum(t["killed"] for t in trials),
            "identical": sum(t["identical"] for t in trials)}


def _files(exp: Path) -> dict[str, Path]:
    lvl = exp / "replicate_0" / "level_1"
    return {"config.json": exp / "config.json", "manifest.json (level)": lvl / "manifest.json",
            "summary.json": lvl / "summary.json", "metrics.jsonl": lvl / "metrics.jsonl",
            "mask.pt": lvl / "mask.pt", "final.pt": lvl / "final.pt",
            "snapshot_0.pt": exp / "replicate_0" / "level_0" / "snapshot_0.pt"}


def damage(path: Path, how: str) -> None:
    data = path.read_bytes()
    if how == "truncate":
        path.write_bytes(data[:len(data) // 2])
    elif how == "zero bytes":
        mid = len(data) // 2
        n = min(2000, len(data) // 4) or 1
        path.write_bytes(data[:mid] + bytes(n) + data[mid + n:])
    elif how == "cut lines":
        lines = data.rstrip().splitlines(keepends=True)  # the last line with content, cut in half
        path.write_bytes(b"".join(lines[:-1]) + lines[-1][: len(lines[-1]) // 2] if len(lines) > 1
                         else data[:-7])
    elif how == "delete":
        path.unlink()
    elif how == "garbage":
        path.write_bytes(b"\x80garbage{" + os.urandom(64))


def damaged_store(root: Path) -> dict:
    base = root / "base"
    assert cli([*LOTTERY, "--levels", "1", "--store", str(base)])[0] == 0
    exp_name = next(base.iterdir()).name
    commands = {
        "ls": lambda s: ["ls", "--store", s],
        "show": lambda s: ["show", exp_name, "--store", s],
        "report": lambda s: ["report", exp_name, "--store", s, "--out", f"{s}/r.html"],
        "plot": lambda s: ["plot", exp_name, "--store", s, "--out", f"{s}/plots"],
        "verify": lambda s: ["verify", "--store", s],
        "lottery extension": lambda s: [*LOTTERY, "--store", s],
        "export": lambda s: ["export", exp_name, "--level", "1", "--store", s, "-o", f"{s}/t.pt"],
    }
    clean = {}
    for name, argv in commands.items():
        s = root / f"clean-{name.replace(' ', '_')}"
        shutil.copytree(base, s)
        clean[name] = cli(argv(str(s)))[1].replace(str(s), "STORE")
    cells = []
    for fname, path in _files(base / exp_name).items():
        if not path.exists():  # the code before manifests (against_1d2429c.py) writes no manifest.json
            continue
        for how in ("truncate", "zero bytes", "cut lines", "delete", "garbage"):
            for name, argv in commands.items():
                s = root / "cell"
                shutil.rmtree(s, ignore_errors=True)
                shutil.copytree(base, s)
                damage(_files(s / exp_name)[fname], how)
                rc, out, err = cli(argv(str(s)))
                res = outcome(rc, out.replace(str(s), "STORE"), err, clean[name])
                if name == "verify" and rc == 0 and "checks out" in out:
                    res = "silent"  # verify missed the damage
                elif name == "verify" and res in ("differs", "multi-line") and "Traceback" not in err:
                    res = "reported"  # verify listing the damage (rc 1) is its job
                elif res == "differs" and err.strip():
                    res = "warned"  # another output, but said so on stderr (ls: a deleted summary.json)
                cells.append({"file": fname, "damage": how, "command": name, "outcome": res, "rc": rc,
                              "line": (err.strip().splitlines() or [""])[-1][:200]})
    tally = {}
    for c in cells:
        tally[c["outcome"]] = tally.get(c["outcome"], 0) + 1
    return {"cells": len(cells), "tally": tally,
            "findings": [c for c in cells if c["outcome"] not in ("ok", "error", "reported", "warned")]}


BAD = [
    # train: floats (NaN, inf, out of range), ints, choices, types
    *[["train", f, v] for f in ("--lr", "--momentum", "--weight-decay", "--train-fraction", "--gamma")
      for v in ("nan", "inf", "-inf", "-1", "abc")],
    *[["train", f, v] for f in ("--iterations", "--batch-size", "--eval-every", "--init-seed", "--data-seed")
      for v in ("-1", "1.5", "x")],
    *[["train", f, v] for f in ("--threads", "--workers", "--stack", "--checkpoint-every") for v in ("0", "-1", "x")],
    ["train", "--optimizer", "lbfgs"], ["train", "--schedule", "cyclic"], ["train", "--model", "nope"],
    ["train", "--dataset", "nope"], ["train", "--betas", "0.9,2"], ["train", "--model-args", "{bad json"],
    ["train", "--config", "/nonexistent.toml"], ["train", "--device", "tpu"],
    # lottery
    *[["lottery", "--prune-fraction", v] for v in ("0", "1.0", "1.5", "-0.1", "nan")],
    ["lottery", "--levels", "1", "--target-sparsity", "0.5"], ["lottery", "--levels", "-1"],
    ["lottery", "--target-sparsity", "1.0"], ["lottery", "--controls", "bogus"], ["lottery", "--control-draws", "0"],
    ["lottery", *TRAIN, "--levels", "1", "--controls", "reinit", "--control-levels", "99"],
    ["lottery", "--control-levels", "0"], ["lottery", "--strategy", "random"], ["lottery", "--rewind-iter", "-3"],
    ["lottery", "--replicates", "0"], ["lottery", "--output-fraction", "2"],
    # other commands
    ["instability", "nope-experiment", "--level", "1"], ["instability", "EXP", "--level", "1", "--points", "2"],
    ["show", "nope"], ["report", "nope"], ["plot", "nope"], ["export", "nope", "--level", "1"],
    ["export", "EXP", "--level", "99"], ["verify", "nope"], ["sweep", "/nonexistent.toml"],
    ["sparse-train", "--method", "bogus"], ["sparse-train", "--sparsity", "1.5"], ["sparse-train", "--sparsity", "nan"],
    ["transfer", "nope", "--target-dataset", "mnist1d"], ["teacher-student", "--lr", "nan", "--steps", "50"],
    ["data", "bogus-subcommand"], ["nonsense-command"], ["train", "--no-such-flag"],
]


# a checkpoint at every evaluation (the loop checkpoints at evaluations), every 10 steps, of a wide MLP
# (≈ 1.1 M weights: ≈ 15 MB of state a run), so that a run's checkpoint write lasts a few milliseconds
SPARSE = ["sparse-train", "--iterations", "300", "--eval-every", "10", "--batch-size", "50", "--train-fraction", "0.3",
          "--model-args", '{"widths": [1024, 1024]}', "--method", "rigl", "--replicates", "2", "--stack", "2",
          "--checkpoint-every", "10", "--quiet"]


def _stop_between_writes(p: subprocess.Popen, store: Path, sig: signal.Signals, after: float) -> list[int]:
    """Wait `after` seconds, then watch the two runs' checkpoint.pt and send `sig` the moment replicate_0's
    is newer than replicate_1's: the stack has written one run's checkpoint and not yet the other's.
    Returns [the process's exit status, the checkpoints' iterations] once it is gone (130 for a Ctrl-C,
    -9 for kill -9, 0 and no checkpoints when it ended first)."""
    time.sleep(after)
    c0, c1 = None, None
    while p.poll() is None:
        if c0 is None:
            found = sorted(store.glob("*/replicate_*/checkpoint.pt"))
            if len(found) == 2:
                c0, c1 = found
        if c0 is not None:
            try:
                if c0.stat().st_mtime_ns > c1.stat().st_mtime_ns:
                    p.send_signal(sig)
                    break
            except FileNotFoundError:  # the runs finished meanwhile
                pass
        time.sleep(0.0005)
    p.wait()
    return [p.returncode, sorted({int(torch.load(c, weights_only=True)["iteration"]) for c in store.rglob("checkpoint.pt")})]


def stack_trials(root: Path, n: int, rng: random.Random) -> dict:
    ref = root / "stack-ref"
    t0 = time.perf_counter()
    subprocess.run([PY, "-m", "ticketlab", *SPARSE, "--store", str(ref)], check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    span = time.perf_counter() - t0
    want = final_tensors(next(ref.iterdir()))
    trials = []
    for i in range(n):
        store, sig = root / f"stack{i}", (signal.SIGINT, signal.SIGKILL)[i % 2]
        stops = []
        for _ in range(2):  # stopped twice, each time between the runs' writes, then resumed to the end
            # SIGINT as in a terminal: a job started in the background (nohup ... &) inherits it ignored
            p = subprocess.Popen([PY, "-m", "ticketlab", *SPARSE, "--store", str(store)],
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                 preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
            stops.append(_stop_between_writes(p, store, sig, rng.uniform(0.2, 0.6) * span))
        r = subprocess.run([PY, "-m", "ticketlab", *SPARSE, "--store", str(store)],
                           stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        exp = next(store.iterdir())
        trials.append({"signal": sig.name, "stops (exit status, checkpoints at)": stops,
                       "apart": sum(len(its) > 1 for _, its in stops), "resume_rc": r.returncode,
                       "resume_err": r.stderr.strip()[-200:],
                       "identical": r.returncode == 0 and same(want, final_tensors(exp))})
    return {"uninterrupted_s": round(span, 1), "trials": trials, "stops": 2 * n,
            "apart": sum(t["apart"] for t in trials), "identical": sum(t["identical"] for t in trials)}


def bad_inputs(root: Path) -> dict:
    store = root / "bad"
    assert cli([*LOTTERY, "--levels", "1", "--store", str(store)])[0] == 0
    exp = next(store.iterdir()).name
    rows = []
    for argv in BAD:
        argv = [exp if a == "EXP" else a for a in argv]
        s = root / "badcell"
        shutil.rmtree(s, ignore_errors=True)
        shutil.copytree(store, s)
        full = argv + ["--store", str(s)] if argv[0] not in ("data", "nonsense-command") else argv
        if argv[0] in ("train", "lottery", "sparse-train"):  # tiny runs, where the flag under test leaves room
            for flag, v in (("--iterations", "2"), ("--eval-every", "1")):
                if flag not in argv:
                    full += [flag, v]
            full.append("--quiet")
        rc, out, err = cli(full)
        res = outcome(rc, out, err)
        rows.append({"argv": " ".join(argv), "outcome": "accepted" if res == "ok" else res,
                     "line": (err.strip().splitlines() or [""])[-1][:200]})
    tally = {}
    for r in rows:
        tally[r["outcome"]] = tally.get(r["outcome"], 0) + 1
    return {"inputs": len(rows), "tally": tally, "findings": [r for r in rows if r["outcome"] != "error"]}


def two_processes(root: Path) -> dict:
    store = root / "two"
    argv = [PY, "-m", "ticketlab", *LOTTERY, "--iterations", "3000", "--store", str(store)]
    a = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    while a.poll() is None and not list(store.rglob("mask.pt")):  # the first one is at work
        time.sleep(0.2)
    b = subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    a.wait()
    return {"first_rc": a.returncode, "second_rc": b.returncode, "second_line": b.stderr.strip()[-200:],
            "refused": b.returncode != 0 and "another process" in b.stderr}


def failing_sweep(root: Path) -> dict:
    toml = root / "sweep.toml"
    toml.write_text('kind = "lottery"\n[base]\niterations = 40\neval_every = 20\nbatch_size = 50\n'
                    'train_fraction = 0.3\nlevels = 1\n[grid]\nlr = [1e-3, 1e30]\n[sweep]\nretries = 1\n'
                    'backend = "inline"\n')
    rc, out, err = cli(["sweep", str(toml), "--store", str(root / "sweep")])
    return {"rc": rc, "outcome": outcome(rc, out, err) if rc else "ok", "table": out.strip()[-1200:],
            "stderr_tail": err.strip()[-400:]}


def run() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--kills", type=int, default=10)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default="reliability-out")
    ap.add_argument("--stacks", type=int, default=10, help="trials of the stopped stack (6.)")
    ap.add_argument("--only", default="kill,damage,bad,two,sweep,stack")
    ns = ap.parse_args()
    root = Path(ns.out).resolve()
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir(parents=True)
    res = {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "load_average": os.getloadavg(),
           "torch": torch.__version__, "cpus": os.cpu_count()}
    steps = {"kill": lambda: kill_trials(root, ns.kills, random.Random(ns.seed)), "damage": lambda: damaged_store(root),
             "bad": lambda: bad_inputs(root), "two": lambda: two_processes(root), "sweep": lambda: failing_sweep(root),
             "stack": lambda: stack_trials(root, ns.stacks, random.Random(ns.seed))}
    for name in ns.only.split(","):
        t0 = time.perf_counter()
        res[name] = steps[name]()
        res[name]["seconds"] = round(time.perf_counter() - t0, 1)
        print(name, json.dumps({k: v for k, v in res[name].items() if k not in ("trials", "findings")}), flush=True)
    res["load_average_end"] = os.getloadavg()
    (root / "reliability.json").write_text(json.dumps(res, indent=1, default=str))
    print(json.dumps(res, indent=1, default=str))


if __name__ == "__main__":
    run()
