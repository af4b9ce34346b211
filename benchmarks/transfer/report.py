"""Tables and figures of the transfer benchmark (benchmarks/transfer/README.md) from its store.

    TICKETLAB_DATA=/work/shared/data python benchmarks/transfer/report.py /work/bench/transfer

Re-runs the matrix through the API (everything is in the store, so nothing trains), then writes
out/summary.csv and out/summary.md (one row per pair and level), out/lotteries.md (each recipe's own
IMP ladder), the accuracy plot of every target, gap heat maps at ≈8 %, ≈5 % and ≈3 % of the weights,
and two mask analyses: out/overlap.md (Jaccard overlap of each transferred ticket with the target's own
ticket, per layer, against two random masks of the same densities) and out/input_pixels.png (the
fraction of fc1 weights each input pixel keeps in each recipe's ticket at the deepest level).
"""

import csv
import sys
from pathlib import Path

from ticketlab import api
from ticketlab.experiments.transfer_matrix import load_matrix, summary
from ticketlab.reports.transfer_plots import plot_all, plot_gap_heatmap
from ticketlab.experiments.lottery.trunk import load_masks
from ticketlab.reports.plots import save_figure
from ticketlab.core.pruning import layer_jaccard
from ticketlab.engine.results import aggregate, run_rows
from ticketlab.experiments.transfer import links

HERE = Path(__file__).parent
OUT = HERE / "out"


def fmt(v, nd=2):
    return "" if v is None else (f"{v:.{nd}f}" if isinstance(v, float) else str(v))


def main(store: str) -> None:
    api.set_threads(1)
    m = load_matrix(HERE / "matrix.toml")
    res = api.transfer(matrix=HERE / "matrix.toml", store=store, progress=False, workers=1)
    OUT.mkdir(exist_ok=True)
    for metric, suffix in (("es_test_acc", ""), ("final_test_acc", "_final")):
        rows = summary(res["transfers"], metric)
        with open(OUT / f"summary{suffix}.csv", "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=list(rows[0]))
            w.writeheader()
            w.writerows(rows)
        lines = ["| source → target | level | weights left (%) | transfer | random | own | dense | vs random (pp) | vs own (pp) |",
                 "|---|---|---|---|---|---|---|---|---|"]
        for r in rows:
            lines.append(f"| {r['source']} → {r['target']} | {r['level']} | {r['remaining_%']:.1f} | "
                         f"{fmt(r['transfer_acc_%'])} ± {fmt(r['transfer_std'])} | {fmt(r['random_acc_%'])} ± "
                         f"{fmt(r['random_std'])} | {fmt(r['own_acc_%'])} ± {fmt(r['own_std'])} | "
                         f"{fmt(r['dense_acc_%'])} | {r['gap_vs_random_pp']:+.2f} | {r['gap_vs_own_pp']:+.2f} |")
        (OUT / f"summary{suffix}.md").write_text("\n".join(lines) + "\n")
    lines = ["| recipe | " + " | ".join(f"L{L}" for L in range(m.lottery.levels + 1 if not m.transfer.levels
                                                            else max(m.transfer.levels) + 1)) + " |"]
    lines.append("|---" * (len(lines[0].split("|")) - 2) + "|")
    for name, path in res["lotteries"].items():
        agg = [a for a in aggregate(run_rows(path)) if a["branch"] == "ticket"]
        cells = [f"{100 * a['es_test_acc']:.2f} ± {100 * a['es_test_acc_std']:.2f} ({100 * a['density']:.1f}%)"
                 for a in sorted(agg, key=lambda a: a["level"])]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    (OUT / "lotteries.md").write_text("\n".join(lines) + "\n")
    exps = [t["experiment"] for t in res["transfers"]]
    files = plot_all(exps, OUT, density=0.05)
    files += plot_gap_heatmap(exps, OUT / "gap_heatmap_3pct", density=0.029)
    files += plot_gap_heatmap(exps, OUT / "gap_heatmap_8pct", density=0.079)
    files += overlap(res, OUT / "overlap.md")
    files += input_pixels(res["lotteries"], max(m.transfer.levels), OUT / "input_pixels")
    print("\n".join(str(p) for p in files if p.suffix in (".png", ".md")))


def overlap(res, out: Path) -> list[Path]:
    """Jaccard of the transferred (source) mask with the target's own mask, per layer, mean over replicates,
    beside the expectation for two independent random masks of the same densities."""
    lines = ["| source → target | level | fc1 | fc2 | fc3 | random fc1 | random fc2 | random fc3 |", "|---" * 8 + "|"]
    for t in res["transfers"]:
        info = links(t["experiment"])
        if not info.get("own_path"):
            continue
        for L in info["levels"]:
            js, rs = [], []
            for r in range(info["replicates"]):
                a = load_masks(Path(t["experiment"]) / f"replicate_{r}" / f"level_{L}" / "mask.pt")
                b = load_masks(Path(info["own_path"]) / f"replicate_{r}" / f"level_{L}" / "mask.pt")
                js.append(layer_jaccard(a, b))
                # two independent random masks of densities p and q: E|A∩B| / E|A∪B| = pq / (p + q - pq)
                dens = {n: (a[n].float().mean().item(), b[n].float().mean().item()) for n in a}
                rs.append({n: p * q / (p + q - p * q) for n, (p, q) in dens.items()})
            mean = lambda ds, n: sum(d[n] for d in ds) / len(ds)
            names = ("fc1.weight", "fc2.weight", "fc3.weight")
            lines.append(f"| {t['source']} → {t['target']} | {L} | " + " | ".join(f"{mean(js, n):.3f}" for n in names)
                         + " | " + " | ".join(f"{mean(rs, n):.3f}" for n in names) + " |")
    out.write_text("\n".join(lines) + "\n")
    return [out]


def input_pixels(lotteries: dict, level: int, out: Path) -> list[Path]:
    """Per recipe, the fraction of fc1 weights kept per input pixel (28×28) at `level`, replicate mean."""
    from matplotlib.figure import Figure
    fig = Figure(figsize=(3.2 * len(lotteries), 3.4), layout="constrained")
    axes = fig.subplots(1, len(lotteries))
    for ax, (name, path) in zip(axes, lotteries.items()):
        maps = [load_masks(p)["fc1.weight"].float().mean(0).reshape(28, 28)
                for p in sorted(Path(path).glob(f"replicate_*/level_{level}/mask.pt"))]
        img = sum(maps) / len(maps)
        im = ax.imshow(img.numpy(), cmap="viridis", vmin=0)
        ax.set_title(f"{name}: level {level}", fontsize=9)
        ax.axis("off")
        fig.colorbar(im, ax=ax, shrink=0.8)
    fig.suptitle("fraction of fc1 weights kept per input pixel", fontsize=10)
    return save_figure(fig, out)


if __name__ == "__main__":
    main(sys.argv[1])
