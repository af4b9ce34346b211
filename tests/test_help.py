"""`ticketlab … --help`: every option has a help text, its default is said at most once and never
as "(default: None)", and options with choices list them (issue 17, "The surface a researcher sees")."""

import argparse
import pytest

from ticketlab.cli.commands import parser


def _subparsers(p: argparse.ArgumentParser, path=()):
    for a in p._actions:
        if isinstance(a, argparse._SubParsersAction):
            for name, q in a.choices.items():
                yield path + (name,), q
                yield from _subparsers(q, path + (name,))


ARGVS = [None, ["lottery", "--task", "lm"], ["lottery", "--task", "rl"], ["lottery", "--task", "translate"],
         ["sparse-train", "--method", "set"], ["sparse-train", "--method", "gmp"]]


@pytest.mark.parametrize("argv", ARGVS, ids=lambda a: " ".join(a or ["all"]))
def test_every_option_has_help_and_one_default(argv):
    for path, p in _subparsers(parser(argv)):
        for a in p._actions:
            if a.help == argparse.SUPPRESS or isinstance(a, (argparse._HelpAction, argparse._SubParsersAction)):
                continue
            assert a.help and a.help.strip(), f"{' '.join(path)} {a.option_strings or a.dest}: no help"
            line = p._get_formatter()._expand_help(a)  # what --help prints for this option
            assert "(default: None)" not in line, f"{' '.join(path)} {a.option_strings}: {line!r}"
            assert line.count("(default") <= 1, f"{' '.join(path)} {a.option_strings}: default twice: {line!r}"
        assert "(default: None)" not in p.format_help()


def test_choices_are_listed():
    text = " ".join(dict(_subparsers(parser(None)))[("sparse-train",)].format_help().split())
    from ticketlab.methods.sparse import METHODS
    block = text[text.index("--method V "):]
    for m in METHODS:
        assert m in block[:600], m
    train = " ".join(dict(_subparsers(parser(None)))[("train",)].format_help().split())
    assert "sgd, adam, adamw" in train


def test_the_command_list_names_every_command():
    from ticketlab.cli.commands import COMMANDS
    assert {path[0] for path, _ in _subparsers(parser(None))} == set(COMMANDS)


def test_a_command_line_builds_only_its_own_command():
    from ticketlab.cli.commands import _command
    assert _command(["--debug", "train", "--iterations", "1"]) == "train"
    assert _command(["trian"]) is None and _command(["--help"]) is None  # all built: the error lists them
    p = parser(["train"], only="train")
    assert [path for path, _ in _subparsers(p)] == [("train",)]
    assert p.parse_args(["train", "--iterations", "1"]).iterations == "1"
