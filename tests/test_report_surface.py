"""The report a researcher reads (issue 17, "The surface a researcher sees"): one results table
per branch (fits a 1280-pixel window), the task's own metric and unit in every caption, the
presets' resolved values in the config table, and "—" for the std of a single value.

The LM and translation stores are synthetic: a tiny classification lottery whose config and
summaries are rewritten (through the integrity manifest) as a language model's or a translator's.
"""

import re
from pathlib import Path
import shutil

import pytest
import torch

from ticketlab import api
from ticketlab.core import config as C, integrity
from ticketlab.training.rundir import read_json
from ticketlab.experiments.lottery.trunk import LotteryConfig
from ticketlab.reports.html import write_report
from ticketlab.training.loop import TrainConfig

torch.set_num_threads(1)
TRAIN = TrainConfig(dataset="digits", model="mlp", model_args={"widths": [32]}, iterations=60, batch_size=50,
                    eval_every=20)


@pytest.fixture(scope="module")
def exp(tmp_path_factory):
    store = tmp_path_factory.mktemp("store")
    cfg = LotteryConfig(levels=1, replicates=1, controls=("reinit",))
    return api.lottery(TRAIN, cfg, store=store, progress=False)["experiment"]


def _as_task(exp, dest, task: str, train: dict, metric: str, value: float):
    """A copy of `exp` rewritten as a `task` experiment whose runs score `value` on `metric`."""
    shutil.copytree(exp, dest)
    body = read_json(dest / "config.json")
    body["config"]["task"], body["config"]["train"], body["identity"]["train"] = task, train, train
    integrity.write_json(dest / "config.json", body)
    for s in dest.rglob("summary.json"):
        d = read_json(s)
        d["metric"], d["best_score"] = metric, value
        d["early_stop"][metric] = d["final"][metric] = value
        integrity.write_json(s, d)
    return dest


def _results(page: str) -> list[str]:
    return re.findall(r'<table class="results">.*?</table>', page, re.S)


def test_one_table_per_branch_and_no_std_of_one_value(exp, tmp_path):
    page = write_report(exp, tmp_path / "r.html").read_text()
    tables = _results(page)
    assert len(tables) == 2  # the ticket and the reinit control, each its own narrow table
    for t in tables:
        assert t.count("<th>") <= 8
        assert "± —" in t and "± 0.00" not in t  # one replicate: no std
    assert "test accuracy (%)" in page


def test_lm_report_names_perplexity_and_resolves_presets(exp, tmp_path):
    from ticketlab.domains.nlp.lm_task import PRESETS, LMConfig
    lm = _as_task(exp, tmp_path / "lm", "lm", C.to_dict(LMConfig()), "test_ppl", 123.4)
    page = write_report(lm, tmp_path / "lm.html").read_text()
    assert "in %" not in page and "accuracy (%)" not in "".join(_results(page))
    assert "test perplexity" in _results(page)[0] and "123.40 ± —" in _results(page)[0]
    assert "Test perplexity at early stopping" in page
    assert "Accuracy —" not in page and "Test perplexity —" in page  # the plot's title
    cfg = page[page.index('data-config="train"'):]
    cfg = cfg[:cfg.index("</table>")]
    hidden = re.search(r'hidden <span class="tag">preset</span></td><td class="val">(\d+)<', cfg)
    assert hidden and int(hidden.group(1)) == PRESETS["lstm_small"]["hidden"]
    assert ">null<" not in cfg


def test_bleu_is_shown_in_bleu_points(exp, tmp_path):
    from ticketlab.domains.nlp.translate_task import TranslateConfig
    mt = _as_task(exp, tmp_path / "mt", "translate", C.to_dict(TranslateConfig()), "test_bleu", 27.3)
    page = write_report(mt, tmp_path / "mt.html").read_text()
    assert "test BLEU (BLEU points)" in _results(page)[0] and "27.30 ± —" in _results(page)[0]
    assert "0.27" not in _results(page)[0]


# ---- plots ----------------------------------------------------------------------------------

def test_overlaying_different_metrics_is_refused_in_one_line(exp, tmp_path, capsys):
    from ticketlab.cli.commands import main
    from ticketlab.core.errors import TicketlabError
    from ticketlab.domains.nlp.lm_task import LMConfig
    from ticketlab.reports import plots
    lm = _as_task(exp, tmp_path / "lm", "lm", C.to_dict(LMConfig()), "test_ppl", 123.4)
    with pytest.raises(TicketlabError, match="different metrics"):
        plots.plot_accuracy([exp, lm], tmp_path / "acc", metric="es_score")
    assert main(["plot", str(exp), str(lm), "-o", str(tmp_path / "p")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "different metrics (test_acc, test_ppl;" in err
    assert f"{Path(exp).name}: test_acc" in err and f"{Path(lm).name}: test_ppl" in err  # which has which


def _captured(monkeypatch, module):
    figs = []
    monkeypatch.setattr(module, "save_figure", lambda fig, out: figs.append(fig) or [])
    return figs


def test_sparse_accuracy_shows_every_method_inside_the_axes(monkeypatch, tmp_path):
    from ticketlab.reports import sparse_plots
    means = {"dense": {0.0: 0.96}, "rigl": {0.5: 0.93, 0.9: 0.48}, "set": {0.5: 0.92, 0.9: 0.57},
             "static": {0.5: 0.92, 0.9: 0.52}, "snip": {0.5: 0.93, 0.9: 0.40}}
    rows = [{"model": "mlp", "method": m, "distribution": "erk", "sparsity": s, "final_test_acc": a}
            for m, by in means.items() for s, a in by.items()]
    monkeypatch.setattr(sparse_plots, "sparse_rows", lambda exps: rows)
    figs = _captured(monkeypatch, sparse_plots)
    sparse_plots.plot_sparse_accuracy(["x"], tmp_path / "s")
    ax = figs[0].axes[0]
    lo, hi = ax.get_ylim()
    drawn = {ln.get_label(): list(ln.get_ydata()) for ln in ax.get_lines() if not ln.get_label().startswith("_")}
    for m, by in means.items():
        if m == "dense":
            continue
        assert drawn[m] == pytest.approx([100 * by[s] for s in sorted(by)])  # the true means, not clamped
        assert all(lo < y < hi for y in drawn[m]), (m, drawn[m], (lo, hi))
    labels = {t.get_text() for t in ax.texts}
    assert {"rigl", "set", "static", "snip"} <= labels  # each line labelled at its end


def test_sparse_learning_curves_are_named_by_method_and_sparsity(tmp_path):
    from ticketlab.experiments.sparse_training import SparseConfig
    from ticketlab.reports import plots
    exps = [api.sparse_train(TRAIN, s, store=tmp_path / "store", progress=False)["experiment"]
            for s in (SparseConfig(method="dense"), SparseConfig(method="rigl", sparsity=0.9))]
    names = {f.name for f in plots.plot_all(exps, tmp_path / "plots") if f.suffix == ".png"}
    assert {"learning_curves_dense.png", "learning_curves_rigl_erk_90pct.png"} <= names
    assert plots.run_name(exps[1]) == "rigl, erk, 90% sparse"
    svg = (tmp_path / "plots" / "learning_curves_rigl_erk_90pct.svg").read_text()
    assert "rigl, erk, 90% sparse" in svg and Path(exps[1]).name not in svg


def test_teacher_student_titles_fit_a_narrow_figure():
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from ticketlab.reports.teacher_student_plots import _suptitle
    fig = Figure(figsize=(4.2, 3.6), layout="constrained")
    fig.subplots()
    _suptitle(fig, "teacher nodes recovered (first hidden layer)\nτ = 0.95; inputs N(0, 1.5²), d = 100; "
              "10000 eval samples; 4 seeds; 100000 steps")
    canvas = FigureCanvasAgg(fig)
    canvas.draw()
    box = fig._suptitle.get_window_extent(canvas.get_renderer())
    assert box.x0 >= 0 and box.x1 <= fig.bbox.width
