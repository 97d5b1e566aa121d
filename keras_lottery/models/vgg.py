"""VGG-19 for CIFAR-10 (the variant of Liu et al. 2019 the paper uses, Section 4).

Sixteen 3x3 "same" convolutions, each followed by batch normalization and ReLU, in five
stages (2x64, 2x128, 4x256, 4x512, 4x512) with 2x2 max pooling between stages, then
global average pooling and one 10-way fully-connected layer. Convolutions have no bias
(batch normalization supplies the shift); batch normalization is never pruned.
"""

from keras_lottery.backend import keras

STAGES = ((64, 64), (128, 128), (256,) * 4, (512,) * 4, (512,) * 4)


def vgg19(input_shape, num_classes, config, kernel_init):
    """VGG-19: conv1..conv16 (+ bn1..bn16), pool1..pool4, global average pool, output."""
    inputs = keras.Input(shape=input_shape, name="image")
    x = inputs
    index = 0
    for stage, widths in enumerate(STAGES, start=1):
        if stage > 1:
            x = keras.layers.MaxPooling2D(2, name=f"pool{stage - 1}")(x)
        for width in widths:
            index += 1
            x = keras.layers.Conv2D(width, 3, padding="same", use_bias=False,
                                    kernel_initializer=kernel_init(), name=f"conv{index}")(x)
            x = keras.layers.BatchNormalization(name=f"bn{index}")(x)
            x = keras.layers.ReLU(name=f"relu{index}")(x)
    x = keras.layers.GlobalAveragePooling2D(name="average_pool")(x)
    outputs = keras.layers.Dense(num_classes, kernel_initializer=kernel_init(), name="output")(x)
    return keras.Model(inputs, outputs, name="vgg19")
