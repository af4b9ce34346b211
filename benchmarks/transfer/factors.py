"""Issue #18: does the source's training length or size change the MNIST <-> Fashion-MNIST miss?

Morcos, Yu, Paganini & Tian 2019, "One ticket to win them all" (NeurIPS 2019), §4: "winning tickets generated
using larger datasets consistently transferred better"; docs/transfer.md §2.

    TICKETLAB_DATA=/work/shared/data python benchmarks/transfer/factors.py /work/bench/transfer/store18
    python benchmarks/transfer/factors.py STORE MATRIX.toml OUT_FOLDER     # another matrix (a probe's)

Reads the store of `matrix_factors.toml` (benchmarks/transfer/README.md, "Re-measured 2026-12-06") without
training anything (`stored_transfers`: a run in progress is summarised as far as it got) and writes
out18/factors.md and out18/factors.csv:

1. every pair at its transferred level: the transferred ticket, the random ticket, the target's own ticket and
   the dense network (mean ± std over seeds, n), and the transferred ticket's gaps to the random and the own
   ticket, replicate by replicate (source replicate r and its controls share the target's seeds + r), with
   the replicates it wins; at early stopping and at the last iteration;
2. each factor against the reference source on the same target: transfer(variant) − transfer(reference),
   replicate by replicate (both start from the same θ0 and see the same target data order: only the mask
   differs), and the share of the reference's gap to the own ticket that it closes;
3. each source lottery on its own data (dense and ticket at the transferred level);
4. fc1 mask overlap (Jaccard) of each transferred ticket with the target's own ticket and with the reference
   source's ticket, beside two independent random masks of the same densities;
5. the CPU and wall time the store's runs record (a stack's time is counted once).

† marks a group in which runs did not converge (early stopping in the last fifth of the run,
`ticketlab.training.rundir.converged`), with their count: such a figure may understate what the recipe reaches.
"""

import csv
import sys
from pathlib import Path

from ticketlab import api
from ticketlab.core.pruning import layer_jaccard
from ticketlab.engine.results import aggregate, run_rows
from ticketlab.experiments.lottery.trunk import load_masks
from ticketlab.experiments.transfer import links
from ticketlab.experiments.transfer_matrix import load_matrix, paired_stats, per_replicate, stored_transfers
from ticketlab.training.rundir import read_json

HERE = Path(__file__).parent
MATRIX = HERE / "matrix_factors.toml"
OUT = HERE / "out18"
# the reference source of each target, and the factor each other source varies
REFERENCE = {"fmnist_adam": "mnist_adam", "mnist_adam": "fmnist_adam"}
FACTOR = {"mnist_adam": "reference", "fmnist_adam": "reference", "mnist_adam_x3": "length ×3",
          "fmnist_adam_x3": "length ×3", "mnist10_adam": "size 10 %", "fmnist10_adam": "size 10 %"}


def cell(agg: dict | None, metric: str) -> str:
    """mean ± std (n), in %, with † and the count of unconverged runs."""
    if not agg or agg.get(metric) is None:
        return "–"
    mark = f" †{agg['n_unconverged']}" if agg.get("n_unconverged") else ""
    return f"{100 * agg[metric]:.2f} ± {100 * agg[metric + '_std']:.2f} (n={agg['n']}){mark}"


def gap(st: dict) -> str:
    """A paired difference in pp: mean ± std, wins/n."""
    if not st["n"]:
        return "–"
    return f"{100 * st['mean']:+.2f} ± {100 * st['std']:.2f} ({st['wins']}/{st['n']})"


def main(store: str, matrix: Path = MATRIX, out: Path = OUT) -> None:
    api.set_threads(1)
    m = load_matrix(matrix)
    transfers = stored_transfers(m, store)
    if not transfers:
        sys.exit(f"{store}: no transfer of {matrix.name} has run yet")
    out.mkdir(exist_ok=True)
    md, csv_rows = [f"Store: `{store}`; matrix: `{matrix.name}`. Accuracies in %, gaps in pp; "
                    "paired gaps are mean ± std over seeds (seeds won / seeds).", ""], []
    vals = {}  # (source, target, metric) -> per_replicate
    for metric, title in (("es_test_acc", "at early stopping"), ("final_test_acc", "at the last iteration")):
        md += [f"## 1. Transferred ticket and controls, test accuracy {title}", "",
               "| source (factor) → target | level (weights left) | transfer | random | own | dense | "
               "transfer − random | transfer − own |", "|---" * 8 + "|"]
        for t in transfers:
            agg = {(a["branch"], a["level"]): a for a in t["aggregate"]}
            v = vals[(t["source"], t["target"], metric)] = per_replicate(t["experiment"], metric)
            for (branch, L), tv in sorted(v.items(), key=lambda kv: kv[0][1]):
                if branch != "transfer":
                    continue
                vr, vo = paired_stats(tv, v.get(("random", L), {})), paired_stats(tv, v.get(("own", L), {}))
                tr = agg[("transfer", L)]
                md.append(f"| {t['source']} ({FACTOR.get(t['source'], '?')}) → {t['target']} | {L} "
                          f"({100 * tr['density']:.1f} %) | {cell(tr, metric)} | {cell(agg.get(('random', L)), metric)} | "
                          f"{cell(agg.get(('own', L)), metric)} | {cell(agg.get(('dense', 0)), metric)} | "
                          f"{gap(vr)} | {gap(vo)} |")
                csv_rows.append({"metric": metric, "source": t["source"], "factor": FACTOR.get(t["source"]),
                                 "target": t["target"], "level": L, "density": tr["density"],
                                 **{f"{b}_{k}": (agg.get((b, lv)) or {}).get(k2)
                                    for b, lv in (("transfer", L), ("random", L), ("own", L), ("dense", 0))
                                    for k, k2 in (("mean", metric), ("std", metric + "_std"), ("n", "n"),
                                                  ("n_unconverged", "n_unconverged"))},
                                 **{f"vs_random_{k}": x for k, x in vr.items()},
                                 **{f"vs_own_{k}": x for k, x in vo.items()}})
        md.append("")
    md += factor_table(transfers, vals)
    md += sources_table(transfers)
    md += overlap_table(transfers)
    md += cpu_lines(store)
    (out / "factors.md").write_text("\n".join(md) + "\n")
    with open(out / "factors.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(csv_rows[0]))
        w.writeheader()
        w.writerows(csv_rows)
    print((out / "factors.md").read_text())


def factor_table(transfers: list[dict], vals: dict) -> list[str]:
    """Each varied source against the reference source on the same target, replicate by replicate."""
    md = ["## 2. Each factor against the reference source (same target, same θ0 and data order: only the mask "
          "differs)", "", "| target | source (factor) | level | metric | transfer(variant) − transfer(reference) | "
          "share of the reference's gap to the own ticket closed |", "|---" * 6 + "|"]
    for t in transfers:
        ref = REFERENCE.get(t["target"])
        if t["source"] == ref:
            continue
        for metric in ("es_test_acc", "final_test_acc"):
            v, vref = vals[(t["source"], t["target"], metric)], vals.get((ref, t["target"], metric))
            if vref is None:
                continue
            for (branch, L), tv in sorted(v.items(), key=lambda kv: kv[0][1]):
                if branch != "transfer" or ("transfer", L) not in vref:
                    continue
                d = paired_stats(tv, vref[("transfer", L)])
                g = paired_stats(vref.get(("own", L), {}), vref[("transfer", L)])
                share = f"{100 * d['mean'] / g['mean']:+.0f} %" if d["n"] and g["n"] and g["mean"] else "–"
                md.append(f"| {t['target']} | {t['source']} ({FACTOR.get(t['source'], '?')}) | {L} | {metric} | "
                          f"{gap(d)} | {share} |")
    return md + [""]


def sources_table(transfers: list[dict]) -> list[str]:
    """Each source lottery on its own data: the dense network and the ticket at the transferred level."""
    md = ["## 3. The source lotteries on their own data (test accuracy at early stopping; early-stopping iteration)",
          "", "| source | iterations | dense | ticket at level L | ES iteration, dense | ES iteration, ticket |",
          "|---" * 6 + "|"]
    seen = set()
    for t in transfers:
        info = links(t["experiment"])
        if t["source"] in seen:
            continue
        seen.add(t["source"])
        L = max(info["levels"])
        agg = {(a["branch"], a["level"]): a for a in aggregate(run_rows(info["source_path"]))}
        iters = read_json(Path(info["source_path"]) / "config.json")["config"]["train"]["iterations"]
        d, k = agg.get(("ticket", 0)), agg.get(("ticket", L))
        it = lambda a: f"{a['es_iter']:.0f} ± {a['es_iter_std']:.0f}" if a else "–"
        md.append(f"| {t['source']} | {iters} | {cell(d, 'es_test_acc')} | L{L}: {cell(k, 'es_test_acc')} | "
                  f"{it(d)} | {it(k)} |")
    return md + [""]


def overlap_table(transfers: list[dict]) -> list[str]:
    """fc1 Jaccard of each transferred mask with the target's own mask and the reference source's mask."""
    md = ["## 4. fc1 mask overlap (Jaccard, mean over seeds) at the transferred level", "",
          "| source → target | level | with the target's own ticket | with the reference source's ticket | "
          "two random masks |", "|---" * 5 + "|"]
    exp = {(t["source"], t["target"]): t["experiment"] for t in transfers}
    for t in transfers:
        info = links(t["experiment"])
        ref = exp.get((REFERENCE.get(t["target"]), t["target"]))
        for L in info["levels"]:
            own, other, rnd = [], [], []
            for r in range(info["replicates"]):
                mask = Path(t["experiment"]) / f"replicate_{r}" / f"level_{L}" / "mask.pt"
                own_mask = Path(info["own_path"]) / f"replicate_{r}" / f"level_{L}" / "mask.pt"
                if not (mask.exists() and own_mask.exists()):
                    continue
                a, b = load_masks(mask)["fc1.weight"], load_masks(own_mask)["fc1.weight"]
                own.append(layer_jaccard({"w": a}, {"w": b})["w"])
                p, q = a.float().mean().item(), b.float().mean().item()
                rnd.append(p * q / (p + q - p * q))  # E|A∩B| / E|A∪B| for independent masks
                ref_mask = Path(ref) / f"replicate_{r}" / f"level_{L}" / "mask.pt" if ref else None
                if ref and ref != t["experiment"] and ref_mask.exists():
                    other.append(layer_jaccard({"w": a}, {"w": load_masks(ref_mask)["fc1.weight"]})["w"])
            mean = lambda xs: f"{sum(xs) / len(xs):.3f} (n={len(xs)})" if xs else "–"
            md.append(f"| {t['source']} → {t['target']} | {L} | {mean(own)} | {mean(other)} | {mean(rnd)} |")
    return md + [""]


def cpu_lines(store: str) -> list[str]:
    """CPU and wall time the store's runs record; runs of one stack share (and count once) its times."""
    stacks = {}
    for f in Path(store).glob("**/summary.json"):
        s = read_json(f)
        if s.get("stack_cpu_time_s") is not None:
            stacks[(s["stack_cpu_time_s"], s.get("stack_wall_time_s"), s.get("stack_size"))] = s
    cpu = sum(k[0] for k in stacks)
    wall = sum(k[1] or 0 for k in stacks)
    runs = sum(k[2] or 1 for k in stacks)
    return ["## 5. Cost", "", f"{runs} runs in {len(stacks)} stacks: {cpu:.0f} s of CPU ({cpu / 60:.1f} core-minutes) "
            f"and {wall:.0f} s of wall time recorded by the runs (training only: no start-up or data loading).", ""]


if __name__ == "__main__":
    # optional: another matrix file and output folder (a probe's)
    main(sys.argv[1], *(Path(a) for a in sys.argv[2:4]))
