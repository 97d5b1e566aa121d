"""The paper's CIFAR-10 "Resnet-18" (He et al. 2016's 6n+2 CIFAR ResNet with n=3).

A 3x3 convolution with 16 filters, then three stages of three residual blocks of two
3x3 convolutions (16, 32 and 64 filters; the first block of stages 2 and 3 has stride 2),
global average pooling and one 10-way fully-connected layer. Every convolution is
followed by batch normalization. Where a block changes shape, the shortcut is a 1x1
strided convolution with batch normalization, named ``shortcut*`` so recipes can leave
it unpruned (as the paper does). Batch normalization is never pruned.
"""

from keras_lottery.backend import keras

STAGES = (16, 32, 64)
BLOCKS_PER_STAGE = 3


def _conv_bn(x, filters, kernel_size, strides, kernel_init, name):
    x = keras.layers.Conv2D(filters, kernel_size, strides=strides, padding="same", use_bias=False,
                            kernel_initializer=kernel_init(), name=name)(x)
    return keras.layers.BatchNormalization(name=f"{name}_bn")(x)


def _block(x, filters, strides, kernel_init, name):
    shortcut = x
    y = _conv_bn(x, filters, 3, strides, kernel_init, f"{name}_conv1")
    y = keras.layers.ReLU(name=f"{name}_relu1")(y)
    y = _conv_bn(y, filters, 3, 1, kernel_init, f"{name}_conv2")
    if strides != 1 or x.shape[-1] != filters:
        shortcut = _conv_bn(x, filters, 1, strides, kernel_init, f"shortcut_{name}")
    y = keras.layers.Add(name=f"{name}_add")([y, shortcut])
    return keras.layers.ReLU(name=f"{name}_relu2")(y)


def resnet18(input_shape, num_classes, config, kernel_init):
    """Resnet-18 (CIFAR): conv, stage{s}_block{b}_conv{1,2}, shortcut_stage{2,3}_block1, output."""
    inputs = keras.Input(shape=input_shape, name="image")
    x = _conv_bn(inputs, STAGES[0], 3, 1, kernel_init, "conv")
    x = keras.layers.ReLU(name="relu")(x)
    for stage, filters in enumerate(STAGES, start=1):
        for block in range(1, BLOCKS_PER_STAGE + 1):
            strides = 2 if stage > 1 and block == 1 else 1
            x = _block(x, filters, strides, kernel_init, f"stage{stage}_block{block}")
    x = keras.layers.GlobalAveragePooling2D(name="average_pool")(x)
    outputs = keras.layers.Dense(num_classes, kernel_initializer=kernel_init(), name="output")(x)
    return keras.Model(inputs, outputs, name="resnet18")
