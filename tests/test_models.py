"""The paper's networks: exact weight counts, layer kinds, and how each recipe prunes them."""

import numpy as np
import pytest

from keras_lottery import masking, models, pruning
from keras_lottery.config.recipe import ModelConfig

CIFAR = (32, 32, 3)

# model: (input shape, kernel weights, {kind: kernel weights})
COUNTS = {
    "lenet_300_100": ((28, 28, 1), 266_200, {"dense": 265_200, "output": 1_000}),
    "conv2": (CIFAR, 4_300_992, {"conv": 38_592, "dense": 4_259_840, "output": 2_560}),
    "conv4": (CIFAR, 2_425_024, {"conv": 259_776, "dense": 2_162_688, "output": 2_560}),
    "conv6": (CIFAR, 2_261_184, {"conv": 1_144_512, "dense": 1_114_112, "output": 2_560}),
    "vgg19": (CIFAR, 20_024_000, {"conv": 20_018_880, "output": 5_120}),
    "resnet18": (CIFAR, 270_896, {"conv": 267_696, "shortcut": 2_560, "output": 640}),
}
_BUILT = {}


def build(name, dropout=0.0, seed=0):
    key = (name, dropout, seed)
    if key not in _BUILT:
        _BUILT[key] = models.build(ModelConfig(name=name, dropout=dropout), COUNTS[name][0], 10, seed)
    return _BUILT[key]


def kind_counts(model):
    sizes, counts = models.kernel_sizes(model), {}
    for layer, kind in models.layer_kinds(model).items():
        counts[kind] = counts.get(kind, 0) + sizes[layer]
    return counts


@pytest.mark.parametrize("name", sorted(COUNTS))
def test_kernel_weight_counts_match_the_paper(name):
    _, total, by_kind = COUNTS[name]
    model = build(name)
    assert models.kernel_weight_count(model) == total
    assert kind_counts(model) == by_kind
    assert model.output_shape == (None, 10)


def test_conv_nets_have_the_papers_layers():
    for name, convs in (("conv2", 2), ("conv4", 4), ("conv6", 6)):
        kinds = models.layer_kinds(build(name))
        assert list(kinds) == [f"conv{i}" for i in range(1, convs + 1)] + ["fc1", "fc2", "output"]
    vgg = build("vgg19")
    assert sum(kind == "conv" for kind in models.layer_kinds(vgg).values()) == 16
    assert sum(type(layer).__name__ == "BatchNormalization" for layer in vgg.layers) == 16
    resnet = build("resnet18")
    shortcuts = [layer for layer in models.kernel_layers(resnet) if layer.name.startswith("shortcut")]
    assert [(layer.kernel_size, layer.strides, layer.filters) for layer in shortcuts] == [
        ((1, 1), (2, 2), 32), ((1, 1), (2, 2), 64)]
    assert sum(kind == "conv" for kind in models.layer_kinds(resnet).values()) == 19


@pytest.mark.parametrize("name", ["conv2", "conv4", "conv6"])
def test_dropout_variants_drop_the_fc_layers_only(name):
    plain, dropped = build(name), build(name, dropout=0.5)
    rates = [(layer.name, layer.rate) for layer in dropped.layers if type(layer).__name__ == "Dropout"]
    assert rates == [("dropout1", 0.5), ("dropout2", 0.5)]
    assert not any(type(layer).__name__ == "Dropout" for layer in plain.layers)
    assert models.kernel_weight_count(dropped) == models.kernel_weight_count(plain)
    names = [layer.name for layer in dropped.layers]
    assert names.index("dropout1") == names.index("fc1") + 1 and names.index("dropout2") == names.index("fc2") + 1


# model, rates, scope: the pruning setups of the recipes.
SETUPS = {
    "lenet300": ("lenet_300_100", {"dense": 0.2, "output": 0.1}, "layerwise"),
    "conv2": ("conv2", {"conv": 0.1, "dense": 0.2, "output": 0.1}, "layerwise"),
    "conv4": ("conv4", {"conv": 0.1, "dense": 0.2, "output": 0.1}, "layerwise"),
    "conv6": ("conv6", {"conv": 0.15, "dense": 0.2, "output": 0.1}, "layerwise"),
    "vgg19_global": ("vgg19", {"conv": 0.2}, "global"),
    "vgg19_layerwise": ("vgg19", {"conv": 0.2}, "layerwise"),
    "resnet18_global": ("resnet18", {"conv": 0.2}, "global"),
}
EXCLUDED = {"vgg19": {"output"}, "resnet18": {"shortcut_stage2_block1", "shortcut_stage3_block1", "output"}}


@pytest.mark.parametrize("setup", sorted(SETUPS))
def test_remaining_fractions_after_one_and_three_rounds(setup):
    name, kind_rates, scope = SETUPS[setup]
    model = build(name)
    kinds, sizes = models.layer_kinds(model), models.kernel_sizes(model)
    rates = pruning.layer_rates(kinds, kind_rates)
    assert set(kinds) - set(rates) == EXCLUDED.get(name, set())
    kernels = {layer.name: layer.kernel.numpy() for layer in models.kernel_layers(model) if layer.name in rates}
    masks = {layer: np.ones_like(kernel) for layer, kernel in kernels.items()}
    rng = np.random.default_rng(0)
    for round_index in (1, 3):  # round 3 prunes round 1's survivors, as after two more rounds
        trained = {layer: k + rng.normal(0, 0.01, k.shape).astype(np.float32) for layer, k in kernels.items()}
        previous = masks
        masks = pruning.magnitude_masks(trained, masks, rates, round_index, scope)
        for layer, mask in masks.items():
            assert np.all(mask <= previous[layer])  # pruned weights never come back
        if scope == "layerwise":
            for layer, rate in rates.items():
                assert masks[layer].sum() == pruning.keep_count(sizes[layer], rate, round_index)
                assert abs(masks[layer].mean() - (1 - rate) ** round_index) <= 1.0 / sizes[layer]
        else:
            (rate,) = set(kind_rates.values())
            pooled = sum(sizes[layer] for layer in rates)
            assert sum(mask.sum() for mask in masks.values()) == pruning.keep_count(pooled, rate, round_index)
            assert all(0 < mask.mean() <= 1 for mask in masks.values())
        expected = 100 * (sum(m.sum() for m in masks.values()) + sum(sizes[n] for n in sizes if n not in rates))
        assert pruning.weights_remaining(masks, sizes) == pytest.approx(expected / sum(sizes.values()))


def test_global_pruning_at_20_percent_leaves_the_papers_layers_dense():
    """Resnet-18's shortcuts and fc layer are not wrapped, so no mask can ever touch them."""
    model = build("resnet18")
    rates = pruning.layer_rates(models.layer_kinds(model), {"conv": 0.2})
    wrapped = masking.wrap(model, rates)
    assert set(masking.wrappers(wrapped)) == set(rates)
    assert not set(masking.wrappers(wrapped)) & EXCLUDED["resnet18"]
    kinds = {type(masking.base_layer(layer)).__name__ for layer in wrapped.layers if layer.name in masking.wrappers(wrapped)}
    batch_norms = [layer for layer in wrapped.layers if type(layer).__name__ == "BatchNormalization"]
    assert len(batch_norms) == 21 and "BatchNormalization" not in kinds
