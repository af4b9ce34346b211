"""Config validation, canonical hashing and the CLI's one-line errors."""

import dataclasses
import subprocess
import sys

import pytest

from ticketlab.core import config as C
from ticketlab.cli.commands import main
from ticketlab.core.errors import ConfigError
from ticketlab.training.loop import TrainConfig


def test_unknown_key_names_key_and_source():
    with pytest.raises(ConfigError, match=r"unknown key 'lrate' in my\.toml"):
        C.from_dict(TrainConfig, {"lrate": 0.1}, source="my.toml")


@pytest.mark.parametrize("key,value,pattern", [
    ("lr", -1.0, r"^lr: got -1\.0, expected a value >= 0"),
    ("optimizer", "rmsprop", r"^optimizer: got 'rmsprop', expected one of sgd, adam, adamw"),
    ("momentum", 1.5, r"^momentum: got 1\.5, expected a value in \[0\.0, 1\.0\]"),
    ("batch_size", "many", r"^batch_size: got 'many', expected an integer"),
    ("batch_size", 0, r"^batch_size: got 0, expected a value >= 1"),
    ("nesterov", "maybe", r"^nesterov: got 'maybe', expected true or false"),
    ("betas", (0.9,), r"^betas: got \(0\.9,\), expected two numbers"),
])
def test_bad_values_name_the_key(key, value, pattern):
    with pytest.raises(ConfigError, match=pattern):
        C.from_dict(TrainConfig, {key: value})


def test_coercion_from_strings_and_lists():
    cfg = C.from_dict(TrainConfig, {"lr": "0.1", "milestones": "100,200", "nesterov": "true",
                                    "model_args": '{"widths": [10, 10]}'})
    assert cfg.lr == 0.1 and cfg.milestones == (100, 200) and cfg.nesterov is True
    assert cfg.model_args == {"widths": [10, 10]}


def test_hash_is_canonical_and_pinned():
    a = TrainConfig()
    b = C.from_dict(TrainConfig, C.to_dict(a))
    assert C.config_hash("train", a) == C.config_hash("train", b)
    assert C.config_hash("train", a) != C.config_hash("train", dataclasses.replace(a, lr=0.1))
    assert C.config_hash("train", a) != C.config_hash("lottery", a)
    # Pinned: a change here re-labels every stored result. New fields must default to a
    # no-op *and* this value must be updated deliberately, with a schema bump.
    assert C.config_hash("train", a) == PINNED_DEFAULT_HASH


def test_toml_file_unknown_key(tmp_path, capsys):
    f = tmp_path / "c.toml"
    f.write_text('model = "mlp"\nlearning_rate = 0.1\n')
    assert main(["train", "--config", str(f), "--store", str(tmp_path / "s"), "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("ticketlab: error: unknown key 'learning_rate' in")
    assert str(f) in err and "\n" not in err


def test_toml_syntax_error_names_file(tmp_path, capsys):
    f = tmp_path / "bad.toml"
    f.write_text("lr = = 1\n")
    assert main(["train", "--config", str(f), "--quiet"]) == 2
    assert str(f) in capsys.readouterr().err


def test_cli_out_of_range_is_one_line_without_traceback(tmp_path):
    r = subprocess.run([sys.executable, "-m", "ticketlab", "train", "--lr", "-3", "--quiet",
                        "--store", str(tmp_path)], capture_output=True, text=True)
    assert r.returncode == 2
    assert r.stderr.strip() == "ticketlab: error: lr: got -3.0, expected a value >= 0.0"
    assert "Traceback" not in r.stderr


PINNED_DEFAULT_HASH = "f7f79e6b4e67"


def test_unless_default_field_joins_the_identity_only_when_changed():
    """A field added after experiments were stored keeps their hashes at its default."""
    import dataclasses as dc
    from ticketlab.core.config import Config, config_hash, param

    @dc.dataclass(frozen=True)
    class Old(Config):
        lr: float = param(0.1, "learning rate")

    @dc.dataclass(frozen=True)
    class New(Config):
        lr: float = param(0.1, "learning rate")
        extra: int = param(0, "added later", min=0, hashed="unless_default")

    assert config_hash("x", New()) == config_hash("x", Old())
    assert config_hash("x", New(extra=3)) != config_hash("x", Old())
    assert config_hash("x", New(extra=3)) != config_hash("x", New(extra=4))
