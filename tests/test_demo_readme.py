"""benchmarks/demo_mnist1d/README.md pastes what `ticketlab demo` prints: its title lines and the
lottery table's columns must be what the command prints now (fast), and the whole table what a
fresh run prints (slow: `pytest -m slow`, ≈35 s on a quiet machine)."""

from pathlib import Path

import pytest


README = Path(__file__).resolve().parents[1] / "benchmarks" / "demo_mnist1d" / "README.md"


def _verbatim() -> list[str]:
    text = README.read_text()
    block = text[text.index("What `make demo` prints, verbatim"):]
    block = block[block.index("```\n") + 4:]
    return [l.rstrip() for l in block[:block.index("```")].splitlines()]


def _printed(capsys, monkeypatch, aggregate) -> list[str]:
    from ticketlab import api
    from ticketlab.cli.commands import main
    monkeypatch.setattr(api, "demo", lambda **kw: {"experiment": "x", "aggregate": aggregate, "plots": [],
                                                    "report": "r"})
    assert main(["demo", "--quiet"]) in (0, None)
    lines = [l.rstrip() for l in capsys.readouterr().out.splitlines()]
    return lines[1:-2]  # without the experiment folder, the plots and the report


def test_the_readme_has_the_demos_title_and_columns(capsys, monkeypatch):
    agg = [{"branch": b, "level": L, "density": 0.8 ** L, "n": 2, "n_diverged": 0, "n_unconverged": 0,
            "metric": "test_acc", "es_iter": 500.0, "es_iter_std": 0.0, "es_score": 0.6, "es_score_std": 0.0,
            "final_score": 0.6, "final_score_std": 0.0}
           for b in ("ticket", "random_mask", "reinit") for L in range(9) if b == "ticket" or L > 0]
    printed, readme = _printed(capsys, monkeypatch, agg), _verbatim()
    assert printed[:2] == readme[:2]  # the title lines
    assert printed[2].split() == readme[2].split()  # the table's columns
    assert "the claim rests on final_acc" in readme[1]
    assert len(readme) == 2 + 1 + 9 + 2 and readme[-2].startswith("n (runs per point")


@pytest.mark.slow
def test_the_readme_has_the_demos_table(tmp_path, capsys):
    from ticketlab.cli.commands import main
    main(["demo", "--store", str(tmp_path), "--quiet"])
    lines = [l.rstrip() for l in capsys.readouterr().out.splitlines()]
    assert lines[1:-2] == _verbatim()
