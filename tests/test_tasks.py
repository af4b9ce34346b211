"""The task registry: names, errors, and the lottery CLI's --task switch."""

import pytest

from ticketlab.core.errors import ConfigError
from ticketlab.engine.tasks import get_task, task_names, task_of
from ticketlab.training.loop import TrainConfig


def test_classify_task_is_found_by_name_and_by_config():
    t = get_task("classify")
    assert t.config is TrainConfig and t.metric == "test_acc" and t.higher_is_better
    assert task_of(TrainConfig()) == "classify"
    assert {"classify", "rl", "lm", "translate"} <= set(task_names())


def test_unknown_task_names_the_choices():
    with pytest.raises(ConfigError, match="task: got 'nope', expected one of .*classify"):
        get_task("nope")
    with pytest.raises(ConfigError, match="no task takes a dict config"):
        task_of({})


def test_cli_rejects_an_unknown_task(capsys):
    from ticketlab.cli.commands import main
    with pytest.raises(SystemExit) as e:
        main(["lottery", "--task", "nope"])
    assert e.value.code == 2 and "invalid choice: 'nope'" in capsys.readouterr().err


def test_classify_validate_names_a_bad_model(tmp_path):
    from ticketlab.core.errors import TicketlabError
    with pytest.raises(TicketlabError, match="nonesuch"):
        get_task("classify").validate(TrainConfig(model="nonesuch"), None)
