"""Your data and your model from the CLI: `--dataset file.npz|.safetensors`, `--model module:factory`
(issue 15, piece 6)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from ticketlab.cli.commands import main
from ticketlab.core.config import config_hash
from ticketlab.core.errors import ConfigError, DataError
from ticketlab.data import load_dataset
from ticketlab.models import create_model
from ticketlab.training.loop import TrainConfig

FACTORY = '''
import torch
from torch import nn

class Net(nn.Module):  # not a Sequential, no `output_layer`: found as the last Linear
    def __init__(self, width, classes, hidden):
        super().__init__()
        self.body = nn.Sequential(nn.Linear(width, hidden), nn.ReLU())
        self.head = nn.Linear(hidden, classes)

    def forward(self, x):
        return self.head(self.body(x.flatten(1)))

def make(num_classes, input_shape, hidden=32):
    return Net(input_shape[0], num_classes, hidden)

def broken(num_classes, hidden=32):
    raise RuntimeError("out of widgets")

def not_a_model(**kwargs):
    return [kwargs]
'''


def arrays(seed: int = 0, n: int = 400, d: int = 12, classes: int = 3, val: bool = False) -> dict:
    g = np.random.default_rng(seed)
    centers = g.normal(size=(classes, d)) * 2
    out = {}
    for split, m in (("train", n), ("test", n // 4)) + ((("val", n // 4),) if val else ()):
        y = g.integers(0, classes, m)
        out[f"x_{split}"] = (centers[y] + g.normal(size=(m, d))).astype(np.float32)
        out[f"y_{split}"] = y.astype(np.int64)
    return out


@pytest.fixture
def user_module(tmp_path, monkeypatch):
    (tmp_path / "my_models.py").write_text(FACTORY)
    monkeypatch.syspath_prepend(str(tmp_path))
    return "my_models"


def test_cli_lottery_on_a_npz_dataset_and_a_module_factory_model(tmp_path, user_module, capsys):
    np.savez(tmp_path / "blobs.npz", **arrays())
    store = tmp_path / "store"
    argv = ["lottery", "--dataset", str(tmp_path / "blobs.npz"), "--model", f"{user_module}:make",
            "--model-args", '{"hidden": 24}', "--levels", "2", "--iterations", "60", "--batch-size", "40",
            "--eval-every", "20", "--rewind-iter", "10", "--store", str(store), "--quiet", "--workers", "1"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "remaining_%" in out
    (exp,) = store.glob("lottery-*")
    cfg = json.loads((exp / "config.json").read_text())["config"]
    train = cfg["train"] if "train" in cfg else cfg
    assert train["dataset"].startswith(str(tmp_path / "blobs.npz") + "#sha256=")
    assert train["model"] == "my_models:make" and train["model_args"] == {"hidden": 24}
    masks = sorted(exp.rglob("level_2/mask.pt"))
    assert masks, "the second level trained"
    m = torch.load(masks[0], weights_only=True)
    m = m.get("masks", m)
    assert set(m) == {"body.0.weight", "head.weight"}
    assert 0.6 < float(m["body.0.weight"].float().mean()) < 0.66  # 0.8² kept after 2 levels
    assert 0.8 < float(m["head.weight"].float().mean()) < 0.83  # the output layer at half rate: 0.9²
    assert main(argv) == 0  # the same data: the same experiment, already done


def test_the_file_checksum_is_in_the_hash_and_checked_on_load(tmp_path):
    path = tmp_path / "d.npz"
    np.savez(path, **arrays(0))
    a = TrainConfig(dataset=str(path))
    np.savez(path, **arrays(1))
    b = TrainConfig(dataset=str(path))
    assert a.dataset != b.dataset and config_hash("train", a) != config_hash("train", b)
    assert TrainConfig(dataset=b.dataset).dataset == b.dataset  # pinned once: not hashed again
    with pytest.raises(DataError, match="d.npz: sha256 .* differs"):
        load_dataset(a.dataset)
    assert TrainConfig().dataset == "mnist1d"  # registered names are untouched


def test_a_safetensors_file_with_its_own_validation_split(tmp_path):
    from safetensors.numpy import save_file
    data = arrays(2, val=True)
    save_file(data, str(tmp_path / "d.safetensors"))
    ds = load_dataset(str(tmp_path / "d.safetensors"))
    assert ds.num_classes == 3 and ds.input_shape == (12,)
    assert torch.equal(ds.val.x, torch.from_numpy(data["x_val"])) and len(ds.train) == 400
    with pytest.raises(DataError, match="brings its own x_val"):
        load_dataset(str(tmp_path / "d.safetensors"), val_size=10)
    np.savez(tmp_path / "d.npz", **arrays(2))
    ds = load_dataset(str(tmp_path / "d.npz"), split_seed=1)
    assert len(ds.val) == 40 and len(ds.train) == 360  # a tenth held out by default


@pytest.mark.parametrize("change, message", [
    (lambda a: a.pop("y_test"), "missing array.s. y_test"),
    (lambda a: a.update(y_train=a["y_train"][:-1]), r"y_train has int64 \(399,\), expected integer labels of shape \[400\]"),
    (lambda a: a.update(x_test=a["x_test"][:, :5]), r"x_test has float32 \(100, 5\), expected .* \[N, 12\]"),
    (lambda a: a.update(y_train=a["y_train"].astype(np.float32)), "y_train has float32"),
    (lambda a: a.update(x_train=np.array(["a"] * 400)), "x_train has <U1"),
])
def test_a_bad_file_is_a_one_line_error_naming_it(tmp_path, change, message):
    a = arrays()
    change(a)
    np.savez(tmp_path / "bad.npz", **a)
    with pytest.raises(DataError, match=f"bad.npz: {message}") as e:
        load_dataset(str(tmp_path / "bad.npz"))
    assert "\n" not in str(e.value)


def test_bad_paths_and_pickles_are_refused_naming_the_file(tmp_path, capsys):
    assert main(["lottery", "--dataset", str(tmp_path / "nope.npz"), "--store", str(tmp_path), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "nope.npz: no such file" in err
    np.savez(tmp_path / "obj.npz", x_train=np.array([{"a": 1}], dtype=object))
    with pytest.raises(DataError, match="obj.npz: unreadable"):
        load_dataset(str(tmp_path / "obj.npz"))
    (tmp_path / "junk.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(DataError, match="junk.safetensors: unreadable"):
        load_dataset(str(tmp_path / "junk.safetensors"))


def test_model_factory_errors_name_it(user_module):
    kw = dict(input_shape=(12,), num_classes=3)
    m = create_model(f"{user_module}:make", seed=0, hidden=8, **kw)
    assert m.output_layer == "head.weight" and m.head.weight.shape == (3, 8)
    assert torch.equal(m.body[0].weight, create_model(f"{user_module}:make", seed=0, hidden=8, **kw).body[0].weight)
    for name, kwargs, message in [
        ("no_such_module:make", {}, "model 'no_such_module:make': cannot import 'no_such_module'"),
        (f"{user_module}:nothing", {}, "my_models has no callable 'nothing'"),
        (f"{user_module}:broken", {}, r"my_models:broken': the factory failed \(RuntimeError: out of widgets\)"),
        (f"{user_module}:make", {"depth": 2}, "has no option 'depth'"),
        (f"{user_module}:not_a_model", {}, "returned list, expected an nn.Module"),
    ]:
        with pytest.raises(ConfigError, match=message):
            create_model(name, **kw, **kwargs)
