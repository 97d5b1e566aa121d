"""What a ticket costs: multiply-accumulates of each model against hand computation, sizes."""

import math

import numpy as np
import pytest

from conftest import RECIPES
from keras_lottery import costs, results
from keras_lottery.config import recipe as recipes


def _model(recipe_name, shape=(32, 32, 3)):
    from keras_lottery import models

    recipe = recipes.load(RECIPES / f"{recipe_name}.json")
    return models.source(recipe.model, shape, 10).build(0)


def _conv_net(widths):
    """Conv-2/4/6 by hand: two 3x3 'same' convs per block, 2x2 pooling, fc 256, 256, 10."""
    layers, channels, side = [], 3, 32
    for width in widths:
        for _ in range(2):
            layers.append((9 * channels * width, side * side))
            channels = width
        side //= 2
    layers += [(side * side * channels * 256, 1), (256 * 256, 1), (256 * 10, 1)]
    return layers


def _vgg19():
    layers, channels, side = [], 3, 32
    for stage, widths in enumerate(((64, 64), (128, 128), (256,) * 4, (512,) * 4, (512,) * 4)):
        side = side // 2 if stage else side
        for width in widths:
            layers.append((9 * channels * width, side * side))
            channels = width
    return layers + [(512 * 10, 1)]


def _resnet18():
    layers = [(9 * 3 * 16, 1024)]
    channels = 16
    for filters, side in ((16, 32), (32, 16), (64, 8)):
        for block in range(3):
            layers.append((9 * channels * filters, side * side))
            layers.append((9 * filters * filters, side * side))
            if channels != filters:
                layers.append((channels * filters, side * side))  # the 1x1 shortcut
            channels = filters
    return layers + [(64 * 10, 1)]


HAND = {
    "lenet300_mnist": ((28, 28, 1), [(784 * 300, 1), (300 * 100, 1), (100 * 10, 1)]),
    "conv2_cifar10": ((32, 32, 3), _conv_net((64,))),
    "conv4_cifar10": ((32, 32, 3), _conv_net((64, 128))),
    "conv6_cifar10": ((32, 32, 3), _conv_net((64, 128, 256))),
    "vgg19_cifar10": ((32, 32, 3), _vgg19()),
    "resnet18_cifar10": ((32, 32, 3), _resnet18()),
}


@pytest.mark.parametrize("recipe_name", sorted(HAND))
def test_dense_multiply_accumulates_of_each_model_match_hand_computation(recipe_name):
    from keras_lottery import models

    shape, layers = HAND[recipe_name]
    model = _model(recipe_name, shape)
    sizes, positions = models.kernel_sizes(model), costs.positions(model)
    assert sorted((sizes[name], positions[name]) for name in sizes) == sorted(layers)
    kept, dense = costs.macs({}, sizes, positions)
    assert kept == dense == sum(size * uses for size, uses in layers)


def test_conv2_macs_of_a_mask_count_each_conv_weight_per_output_position():
    from keras_lottery import models

    model = _model("conv2_cifar10")
    sizes, positions = models.kernel_sizes(model), costs.positions(model)
    masks = {name: np.ones(model.get_layer(name).kernel.shape, np.float32) for name in sizes}
    masks["conv2"].reshape(-1)[: 36864 // 2] = 0  # half of conv2's weights
    kept, dense = costs.macs(masks, sizes, positions)
    assert dense == 1728 * 1024 + 36864 * 1024 + 4194304 + 65536 + 2560
    assert kept == dense - 36864 // 2 * 1024
    flops = costs.flops_remaining(masks, sizes, positions)
    from keras_lottery.pruning import weights_remaining

    assert flops == pytest.approx(100 * kept / dense)
    assert weights_remaining(masks, sizes) > 99 and flops < 57  # conv2's weights are 0.9% of the weights, 86% of the MACs


def test_sizes_dense_gzip_bitmask_and_indices_by_hand():
    rng = np.random.default_rng(0)
    mask = np.zeros((10, 10), np.float32)
    mask.reshape(-1)[rng.permutation(100)[:30]] = 1
    weights = {"fc/kernel": rng.normal(size=(10, 10)).astype(np.float32) * mask,
               "fc/bias": np.ones(10, np.float32)}
    found = costs.sizes(weights, {"fc": mask})
    assert found["dense"] == 4 * 110
    assert found["bitmask"] == math.ceil(100 / 8) + 4 * 30 + 4 * 10
    assert found["indices"] == (2 + 4) * 30 + 4 * 10  # uint16 indices: the kernel has <= 65,536 weights
    assert 0 < found["gzip"]
    big = costs.sizes({"k/kernel": np.zeros((300, 300), np.float32)}, {"k": np.zeros((300, 300))})
    assert big["indices"] == 0 and big["bitmask"] == math.ceil(90000 / 8) and big["gzip"] < big["dense"] / 50
    assert costs.human(1234567) == "1.2 MB" and costs.human(812) == "812 B"


def test_rows_without_flops_remaining_still_load():
    row = {"trial": 0, "round": 1, "variant": "ticket", "weights_remaining": 80.0, "early_stop_iteration": 20,
           "early_stop_test_accuracy": 0.9, "final_test_accuracy": 0.9, "best_val_loss": 0.3, "status": "ok"}
    assert results.typed(row)["flops_remaining"] is None
    assert results.typed({**row, "flops_remaining": "64.5"})["flops_remaining"] == 64.5
