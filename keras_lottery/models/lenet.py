"""Fully-connected networks: Lenet-300-100 (the paper's MNIST network) and a sized MLP."""

from keras_lottery.backend import keras


def mlp(input_shape, num_classes, config, kernel_init, hidden=None, name="mlp"):
    """ReLU MLP with hidden layers ``config.hidden`` (or ``hidden``), named fc1, fc2, ..., output."""
    sizes = hidden or config.hidden or (300, 100)
    inputs = keras.Input(shape=input_shape, name="image")
    x = keras.layers.Flatten(name="flatten")(inputs)
    for index, units in enumerate(sizes, start=1):
        x = keras.layers.Dense(units, activation="relu", kernel_initializer=kernel_init(), name=f"fc{index}")(x)
        if config.dropout:
            x = keras.layers.Dropout(config.dropout, name=f"dropout{index}")(x)
    outputs = keras.layers.Dense(num_classes, kernel_initializer=kernel_init(), name="output")(x)
    return keras.Model(inputs, outputs, name=name)


def lenet_300_100(input_shape, num_classes, config, kernel_init):
    """Lenet-300-100: 784-300-100-10 with ReLU, the paper's Figure 2 network (266,200 weights)."""
    return mlp(input_shape, num_classes, config, kernel_init, hidden=(300, 100), name="lenet_300_100")
