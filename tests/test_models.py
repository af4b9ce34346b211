"""Tests for ticketlab.models: the registry, every registered model, counts, seeding, init, errors."""

from __future__ import annotations

import copy
import math

import pytest
import torch
from torch import nn

from ticketlab.core.errors import ConfigError
from ticketlab.models import (
    _registry,
    create_model,
    list_models,
    output_layer_name,
    prunable_parameters,
    register_model,
)
from ticketlab.models.init import init_weights

torch.set_num_threads(1)

ALL_MODELS = [
    "conv2", "conv4", "conv6", "lenet300_100", "lenet5", "mlp", "resnet20", "vgg11", "vgg16", "vgg19",
]

# Small input (and, for the big nets, a width-reduced variant) per model for the registry sweep.
# Models registered later without an entry get the MNIST shape and their defaults.
SWEEP: dict[str, tuple[tuple[int, ...], dict]] = {
    "resnet20": ((3, 32, 32), {}),
    "vgg11": ((3, 32, 32), {"width": 16}),
    "vgg16": ((3, 32, 32), {"width": 16}),
    "vgg19": ((3, 32, 32), {"width": 16}),
}
MNIST = (1, 28, 28)


def n_weights(model: nn.Module) -> int:
    return sum(p.numel() for p in prunable_parameters(model).values())


# --------------------------------------------------------------------------------------- registry


def test_list_models() -> None:
    assert list_models() == sorted(list_models())
    assert set(ALL_MODELS) <= set(list_models())
    assert list_models("vgg*") == ["vgg11", "vgg16", "vgg19"]
    assert list_models("conv?") == ["conv2", "conv4", "conv6"]
    assert list_models("no_such_*") == []


@pytest.mark.parametrize("name", list_models())
def test_registry_sweep(name: str) -> None:
    shape, kwargs = SWEEP.get(name, (MNIST, {}))
    model = create_model(name, input_shape=shape, num_classes=7, seed=0, **kwargs)
    x = torch.randn(2, *shape)
    out = model(x)
    assert out.shape == (2, 7)
    assert torch.isfinite(out).all()

    out.logsumexp(dim=1).sum().backward()
    for pname, p in model.named_parameters():
        assert p.grad is not None, f"{name}: {pname} got no gradient"
        assert torch.isfinite(p.grad).all(), f"{name}: {pname} has a non-finite gradient"

    prunable = prunable_parameters(model)
    assert prunable, name
    assert output_layer_name(model) in prunable
    assert output_layer_name(model) == model.output_layer
    assert list(prunable) == [n for n, _ in model.named_parameters() if n in prunable]
    norm_ids = {
        id(p)
        for m in model.modules()
        if isinstance(m, (nn.modules.batchnorm._NormBase, nn.LayerNorm, nn.GroupNorm))
        for p in m.parameters(recurse=False)
    }
    for pname, p in prunable.items():
        assert pname.endswith(".weight") and p.dim() >= 2, f"{name}: {pname} should not be prunable"
        assert id(p) not in norm_ids, f"{name}: norm parameter {pname} is prunable"
    # The output layer maps to num_classes, and a deep copy (used for rewinding) is equal.
    assert prunable[output_layer_name(model)].shape[0] == 7
    twin = copy.deepcopy(model)
    for (a, pa), (b, pb) in zip(model.state_dict().items(), twin.state_dict().items()):
        assert a == b and torch.equal(pa, pb)


# ---------------------------------------------------------------------------------- architectures


def test_lenet300_100_counts() -> None:
    model = create_model("lenet300_100", input_shape=MNIST, num_classes=10)
    shapes = {n: tuple(p.shape) for n, p in prunable_parameters(model).items()}
    assert shapes == {"fc1.weight": (300, 784), "fc2.weight": (100, 300), "fc3.weight": (10, 100)}
    assert n_weights(model) == 266_200
    assert sum(p.numel() for n, p in model.named_parameters() if n.endswith(".bias")) == 410
    assert output_layer_name(model) == "fc3.weight"
    # in_features = prod(input_shape): MNIST-1D (40 points) and 8x8 digits work too.
    assert create_model("lenet300_100", input_shape=(40,), num_classes=10)(torch.randn(2, 40)).shape == (2, 10)
    assert create_model("lenet300_100", input_shape=(1, 8, 8), num_classes=10).fc1.in_features == 64


def test_conv_counts_cifar() -> None:
    # LTH Fig. 2 / lottery.md §4: Conv-2 4,300,992, Conv-4 2,425,024, Conv-6 2,261,184 weights.
    expected = {"conv2": 4_300_992, "conv4": 2_425_024, "conv6": 2_261_184}
    for name, count in expected.items():
        model = create_model(name, input_shape=(3, 32, 32), num_classes=10, init="torch")
        assert n_weights(model) == count, name
        assert output_layer_name(model) == "fc3.weight"
    conv2 = create_model("conv2", input_shape=(3, 32, 32), num_classes=10)
    assert [n for n in prunable_parameters(conv2)] == [
        "conv1.weight", "conv2.weight", "fc1.weight", "fc2.weight", "fc3.weight",
    ]


def test_conv_small_inputs_skip_pools() -> None:
    for shape in [(1, 8, 8), (1, 1, 1), (2, 3, 5)]:
        model = create_model("conv6", input_shape=shape, num_classes=3, seed=1)
        assert model(torch.randn(2, *shape)).shape == (2, 3)
    # (1, 8, 8): 8 -> 4 -> 2 -> 1, so fc1 sees 256 features.
    assert create_model("conv6", input_shape=(1, 8, 8), num_classes=3).fc1.in_features == 256


def test_resnet20_count_and_layout() -> None:
    model = create_model("resnet20", input_shape=(3, 32, 32), num_classes=10)
    prunable = prunable_parameters(model)
    assert n_weights(model) == 270_896
    assert output_layer_name(model) == "fc.weight"
    assert tuple(prunable["fc.weight"].shape) == (10, 64)
    shortcuts = [n for n, p in prunable.items() if p.shape[-1] == 1 and p.dim() == 4]
    assert shortcuts == ["blocks.3.shortcut.0.weight", "blocks.6.shortcut.0.weight"]
    assert sum(1 for p in prunable.values() if p.dim() == 4 and p.shape[-1] == 3) == 19
    wide = create_model("resnet20", input_shape=(3, 8, 8), num_classes=10, width=4)
    assert tuple(wide.fc.weight.shape) == (10, 16)


def test_lenet5_matches_erk_reference() -> None:
    # sparse_training.md §5: conv1 500, conv2 25,000, fc1 400,000, fc2 5,000; 430,500 weights.
    model = create_model("lenet5", input_shape=MNIST, num_classes=10)
    sizes = {n: p.numel() for n, p in prunable_parameters(model).items()}
    assert sizes == {"conv1.weight": 500, "conv2.weight": 25_000, "fc1.weight": 400_000, "fc2.weight": 5_000}
    assert tuple(model.conv1.weight.shape) == (20, 1, 5, 5)
    assert tuple(model.conv2.weight.shape) == (50, 20, 5, 5)
    assert output_layer_name(model) == "fc2.weight"
    # 32x32 input: 28 -> 14 -> 10 -> 5, flatten 50*5*5.
    big = create_model("lenet5", input_shape=(3, 32, 32), num_classes=10)
    assert big.fc1.in_features == 1250
    assert big(torch.randn(2, 3, 32, 32)).shape == (2, 10)
    # LeCun et al. 1998 shapes via options: 61,470 weights.
    classic = create_model(
        "lenet5", input_shape=MNIST, num_classes=10, channels=(6, 16), fc_widths=(120, 84), conv1_padding=2
    )
    assert n_weights(classic) == 61_470
    assert output_layer_name(classic) == "fc3.weight"


def test_vgg_counts_and_small_inputs() -> None:
    # VGG-19 on CIFAR-10: 20,024,000 weights (LTH Fig. 2: 20.0M).
    counts = {"vgg11": 9_222_848, "vgg16": 14_715_584, "vgg19": 20_024_000}
    for name, count in counts.items():
        model = create_model(name, input_shape=(3, 32, 32), num_classes=10, init="torch")
        assert n_weights(model) == count, name
        assert output_layer_name(model) == "fc.weight"
        assert tuple(model.fc.weight.shape) == (10, 512)
    small = create_model("vgg11", input_shape=(3, 8, 8), num_classes=4, width=8)
    assert sum(isinstance(m, nn.MaxPool2d) for m in small.modules()) == 3  # 8 -> 4 -> 2 -> 1, 4th skipped
    assert small(torch.randn(2, 3, 8, 8)).shape == (2, 4)


def test_mlp_options() -> None:
    model = create_model("mlp", input_shape=(40,), num_classes=10, widths=(32, 16, 8), activation="tanh")
    assert list(prunable_parameters(model)) == ["fc1.weight", "fc2.weight", "fc3.weight", "fc4.weight"]
    assert output_layer_name(model) == "fc4.weight"
    assert sum(isinstance(m, nn.Tanh) for m in model.modules()) == 3
    linear = create_model("mlp", input_shape=(40,), num_classes=10, widths=())
    assert output_layer_name(linear) == "fc1.weight"
    leaky = create_model("mlp", input_shape=(5,), num_classes=2, activation="leaky_relu", dropout=0.5, seed=0)
    assert sum(isinstance(m, nn.Dropout) for m in leaky.modules()) == 2
    x = torch.randn(4, 5)
    leaky.eval()
    assert torch.equal(leaky(x), leaky(x))


# ----------------------------------------------------------------------------------------- seeding


def test_seed_is_reproducible_and_isolated() -> None:
    kw = dict(input_shape=(3, 8, 8), num_classes=10)
    state = torch.random.get_rng_state()
    a = create_model("resnet20", seed=3, **kw).state_dict()
    assert torch.equal(torch.random.get_rng_state(), state), "create_model(seed=...) moved the global RNG"
    torch.manual_seed(12345)  # a different global state must not matter
    b = create_model("resnet20", seed=3, **kw).state_dict()
    c = create_model("resnet20", seed=4, **kw).state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not torch.equal(a["conv.weight"], c["conv.weight"])
    assert not torch.equal(a["fc.weight"], c["fc.weight"])
    # Seeding also covers an init override.
    d = create_model("lenet300_100", input_shape=(20,), num_classes=3, seed=0, init="torch")
    e = create_model("lenet300_100", input_shape=(20,), num_classes=3, seed=0, init="torch")
    assert all(torch.equal(p, q) for p, q in zip(d.parameters(), e.parameters()))


# -------------------------------------------------------------------------------------------- init


def test_default_inits() -> None:
    expected = {
        "lenet300_100": "glorot_normal", "lenet5": "glorot_normal", "mlp": "glorot_normal",
        "conv2": "glorot_normal", "conv4": "glorot_normal", "conv6": "glorot_normal",
        "resnet20": "kaiming_normal", "vgg11": "kaiming_normal", "vgg16": "kaiming_normal",
        "vgg19": "kaiming_normal",
    }
    for name, init in expected.items():
        shape, kwargs = SWEEP.get(name, (MNIST, {}))
        if name.startswith("vgg"):
            kwargs = {"width": 4}
        assert create_model(name, input_shape=shape, num_classes=10, **kwargs).default_init == init


def test_glorot_normal_std() -> None:
    model = create_model("lenet300_100", input_shape=MNIST, num_classes=10, seed=0)
    w = model.fc1.weight
    assert tuple(w.shape) == (300, 784)
    target = math.sqrt(2.0 / (784 + 300))
    assert abs(w.std().item() / target - 1) < 0.05
    assert abs(w.mean().item()) < 0.05 * target
    assert all(torch.count_nonzero(p) == 0 for n, p in model.named_parameters() if n.endswith(".bias"))
    # Explicit override on a Kaiming-default model.
    resnet = create_model("resnet20", input_shape=(3, 8, 8), num_classes=10, seed=0, init="glorot_normal")
    w = resnet.blocks[8].conv2.weight  # 64 -> 64, 3x3: fan_in = fan_out = 576
    assert abs(w.std().item() / math.sqrt(2.0 / (576 + 576)) - 1) < 0.05


def test_kaiming_normal_resnet() -> None:
    model = create_model("resnet20", input_shape=(3, 8, 8), num_classes=10, seed=0)
    for block in model.blocks[6:]:  # 3x3 convs with 64 output channels, 36,864 weights each
        for conv in (block.conv1, block.conv2):
            fan_in = conv.weight[0].numel()
            assert abs(conv.weight.std().item() / math.sqrt(2.0 / fan_in) - 1) < 0.05
    bns = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    gammas = torch.cat([bn.weight.detach() for bn in bns])
    assert gammas.min() >= 0 and gammas.max() <= 1 and gammas.std() > 0.2  # U[0, 1]
    assert all(torch.count_nonzero(bn.bias) == 0 for bn in bns)
    assert torch.count_nonzero(model.fc.bias) == 0
    # Kaiming on an MLP: std sqrt(2 / fan_in).
    mlp = create_model("lenet300_100", input_shape=MNIST, num_classes=10, seed=0, init="kaiming_normal")
    assert abs(mlp.fc1.weight.std().item() / math.sqrt(2.0 / 784) - 1) < 0.05


def test_torch_init_is_pytorch_default() -> None:
    mlp = create_model("lenet300_100", input_shape=MNIST, num_classes=10, seed=0, init="torch")
    bound = 1 / math.sqrt(784)  # kaiming_uniform_(a=sqrt(5)) and the bias bound
    assert mlp.fc1.weight.abs().max() <= bound
    assert abs(mlp.fc1.weight.std().item() / (bound / math.sqrt(3)) - 1) < 0.05
    assert torch.count_nonzero(mlp.fc1.bias) > 0
    resnet = create_model("resnet20", input_shape=(3, 8, 8), num_classes=10, init="torch")
    assert all(torch.all(m.weight == 1) for m in resnet.modules() if isinstance(m, nn.BatchNorm2d))


def test_init_weights_rejects_unknown_modules() -> None:
    class Odd(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.scale = nn.Parameter(torch.ones(3))

    with pytest.raises(ConfigError, match="Odd"):
        init_weights(Odd(), "glorot_normal")


# -------------------------------------------------------------------------------------- prunable


class Narrowed(nn.Module):
    prunable = ("b.weight", "c.weight")

    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Conv1d(2, 4, 3)
        self.norm = nn.LayerNorm(4)
        self.b = nn.Linear(4, 4)
        self.c = nn.Linear(4, 2)
        self.output_layer = "c.weight"


def test_prunable_default_and_narrowed() -> None:
    model = Narrowed()
    assert list(prunable_parameters(model)) == ["b.weight", "c.weight"]
    assert output_layer_name(model) == "c.weight"
    Narrowed.prunable = None  # type: ignore[assignment]
    try:
        assert list(prunable_parameters(model)) == ["a.weight", "b.weight", "c.weight"]
    finally:
        Narrowed.prunable = ("b.weight", "c.weight")

    model.prunable = ("b.weight", "norm.weight")
    with pytest.raises(ConfigError, match="norm.weight"):
        prunable_parameters(model)
    model.prunable = ("b.weight",)
    with pytest.raises(ConfigError, match="c.weight"):
        output_layer_name(model)
    with pytest.raises(ConfigError, match="output_layer"):
        output_layer_name(nn.Linear(2, 2))


# ---------------------------------------------------------------------------------------- errors


def test_unknown_model_name() -> None:
    with pytest.raises(ConfigError, match="resnet21") as info:
        create_model("resnet21", input_shape=(3, 32, 32), num_classes=10)
    assert "resnet20" in str(info.value) and "lenet300_100" in str(info.value)


def test_unknown_kwarg() -> None:
    with pytest.raises(ConfigError) as info:
        create_model("lenet300_100", input_shape=MNIST, num_classes=10, widths=(10,))
    assert "widths" in str(info.value) and "lenet300_100" in str(info.value)
    with pytest.raises(ConfigError) as info:
        create_model("resnet20", input_shape=(3, 32, 32), num_classes=10, widht=8)
    assert "widht" in str(info.value) and "resnet20" in str(info.value) and "width" in str(info.value)


@pytest.mark.parametrize(
    ("name", "kwargs", "needle"),
    [
        ("lenet300_100", {"init": "xavier"}, "xavier"),
        ("lenet300_100", {"num_classes": 0}, "num_classes"),
        ("lenet300_100", {"input_shape": (28, 0)}, "input_shape"),
        ("lenet300_100", {"seed": "1"}, "seed"),
        ("conv2", {"input_shape": (28, 28)}, "conv2"),
        ("lenet5", {"input_shape": (1, 12, 12)}, "too small"),
        ("mlp", {"activation": "gelu"}, "gelu"),
        ("mlp", {"dropout": 1.0}, "dropout"),
        ("mlp", {"widths": (300, -1)}, "widths"),
        ("resnet20", {"width": 0}, "width"),
        ("vgg11", {"width": 1.5}, "width"),
    ],
)
def test_bad_values(name: str, kwargs: dict, needle: str) -> None:
    args = {"input_shape": MNIST, "num_classes": 10, **kwargs}
    with pytest.raises(ConfigError, match=needle):
        create_model(name, **args)


def test_register_model(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_registry, "_MODELS", dict(_registry._MODELS))

    @register_model
    def tiny_test_net(*, input_shape, num_classes, hidden: int = 3):
        model = nn.Sequential(nn.Flatten(1), nn.Linear(math.prod(input_shape), hidden), nn.Linear(hidden, num_classes))
        model.output_layer = "2.weight"
        return model

    assert "tiny_test_net" in list_models("tiny_*")
    model = create_model("tiny_test_net", input_shape=(4,), num_classes=2, hidden=5)
    assert model(torch.randn(2, 4)).shape == (2, 2)
    with pytest.raises(ConfigError, match="hiden"):
        create_model("tiny_test_net", input_shape=(4,), num_classes=2, hiden=5)

    def other():
        pass

    other.__name__ = "tiny_test_net"
    with pytest.raises(TypeError, match="input_shape"):
        register_model(other)


def test_numpy_integers_accepted() -> None:
    import numpy as np
    model = create_model(
        "mlp", input_shape=(np.int64(6),), num_classes=np.int64(3), seed=np.int64(1), widths=[np.int64(4)]
    )
    assert model.num_classes == 3 and type(model.num_classes) is int
    assert model(torch.randn(2, 6)).shape == (2, 3)
