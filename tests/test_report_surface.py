"""The report a researcher reads (issue 17, "The surface a researcher sees"): one results table
per branch (fits a 1280-pixel window), the task's own metric and unit in every caption, the
presets' resolved values in the config table, and "—" for the std of a single value.

The LM and translation stores are synthetic: a tiny classification lottery whose config and
summaries are rewritten (through the integrity manifest) as a language model's or a translator's.
"""

import re
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
    cfg = page[page.index('data-config="train"'):]
    cfg = cfg[:cfg.index("</table>")]
    hidden = re.search(r'hidden <span class="tag">preset</span></td><td class="val">(\d+)<', cfg)
    assert hidden and int(hidden.group(1)) == PRESETS["lstm_small"]["hidden"]
    assert ">null<" not in cfg


def test_bleu_is_shown_in_bleu_points(exp, tmp_path):
    pytest.importorskip("ticketlab.domains.nlp.translate_task")
    from ticketlab.domains.nlp.translate_task import TranslateConfig
    mt = _as_task(exp, tmp_path / "mt", "translate", C.to_dict(TranslateConfig()), "test_bleu", 27.3)
    page = write_report(mt, tmp_path / "mt.html").read_text()
    assert "test BLEU (BLEU points)" in _results(page)[0] and "27.30 ± —" in _results(page)[0]
    assert "0.27" not in _results(page)[0]
