"""Conv-2, Conv-4 and Conv-6: the paper's VGG-like CIFAR-10 networks (Figure 2, Section 3).

Blocks of two 3x3 "same" ReLU convolutions followed by 2x2 max pooling (64, then 128,
then 256 filters), then fully-connected layers 256, 256 and the 10-way output. With
``config.dropout > 0`` each hidden fully-connected layer is followed by dropout (the
paper's dropout experiments use 0.5).
"""

from keras_lottery.backend import keras

BLOCKS = {"conv2": (64,), "conv4": (64, 128), "conv6": (64, 128, 256)}


def conv_net(input_shape, num_classes, config, kernel_init, filters):
    """Conv layers conv1..conv2k (two per block), pool1..poolk, fc1, fc2, output."""
    inputs = keras.Input(shape=input_shape, name="image")
    x = inputs
    index = 0
    for block, width in enumerate(filters, start=1):
        for _ in range(2):
            index += 1
            x = keras.layers.Conv2D(width, 3, padding="same", activation="relu",
                                    kernel_initializer=kernel_init(), name=f"conv{index}")(x)
        x = keras.layers.MaxPooling2D(2, name=f"pool{block}")(x)
    x = keras.layers.Flatten(name="flatten")(x)
    for fc in (1, 2):
        x = keras.layers.Dense(256, activation="relu", kernel_initializer=kernel_init(), name=f"fc{fc}")(x)
        if config.dropout:
            x = keras.layers.Dropout(config.dropout, name=f"dropout{fc}")(x)
    outputs = keras.layers.Dense(num_classes, kernel_initializer=kernel_init(), name="output")(x)
    return keras.Model(inputs, outputs, name=f"conv{2 * len(filters)}")


def conv2(input_shape, num_classes, config, kernel_init):
    """Conv-2: 64, 64, pool; fc 256, 256, 10 (4,300,992 weights on CIFAR-10)."""
    return conv_net(input_shape, num_classes, config, kernel_init, BLOCKS["conv2"])


def conv4(input_shape, num_classes, config, kernel_init):
    """Conv-4: 64, 64, pool, 128, 128, pool; fc 256, 256, 10 (2,425,024 weights)."""
    return conv_net(input_shape, num_classes, config, kernel_init, BLOCKS["conv4"])


def conv6(input_shape, num_classes, config, kernel_init):
    """Conv-6: Conv-4 plus 256, 256, pool; fc 256, 256, 10 (2,261,184 weights)."""
    return conv_net(input_shape, num_classes, config, kernel_init, BLOCKS["conv6"])
