"""The one place that imports TensorFlow and Keras, the Keras :mod:`keras_lottery.flavours` chose.

- ``tf_keras`` (the default): tensorflow-model-optimization 0.8 works only with legacy
  Keras 2 (``tf_keras``), while TensorFlow 2.16+ ships Keras 3 as ``tf.keras``.
  ``TF_USE_LEGACY_KERAS`` must be set before TensorFlow is imported.
- ``keras3``: Keras 3 (``import keras``) on the backend ``KERAS_BACKEND`` names;
  tfmot is not imported (``tfmot`` is None).

Every module of the package imports TensorFlow, Keras and tfmot from here and nowhere
else. ``FLAVOUR`` says which Keras runs, ``LEGACY`` whether it is tf_keras, and
``BACKEND`` the Keras backend (``tensorflow`` for tf_keras).
"""

import os

from keras_lottery import flavours

FLAVOUR = flavours.check(os.environ.get(flavours.ENVIRONMENT) or flavours.DEFAULT, flavours.ENVIRONMENT)
LEGACY = FLAVOUR == flavours.TF_KERAS
if LEGACY:
    os.environ["TF_USE_LEGACY_KERAS"] = "1"
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def _split_cpu_before_tensorflow_starts():
    """Honour KERAS_LOTTERY_CPU_DEVICES=N (N logical CPU devices), before any TF op."""
    count = os.environ.get("KERAS_LOTTERY_CPU_DEVICES")
    if not count:
        return
    import tensorflow as _tf

    try:
        n = int(count)
    except ValueError:
        raise SystemExit(
            f"error: KERAS_LOTTERY_CPU_DEVICES must be a whole number, got {count!r}"
        ) from None
    cpu = _tf.config.list_physical_devices("CPU")[0]
    try:
        _tf.config.set_logical_device_configuration(
            cpu, [_tf.config.LogicalDeviceConfiguration() for _ in range(max(n, 1))]
        )
    except RuntimeError:  # TensorFlow already initialized: configuration is fixed.
        pass


_split_cpu_before_tensorflow_starts()

import tensorflow as tf  # noqa: E402

if LEGACY:
    import tf_keras as keras  # noqa: E402
    import tensorflow_model_optimization as tfmot  # noqa: E402

    BACKEND = "tensorflow"
else:
    import keras  # noqa: E402

    tfmot = None
    BACKEND = keras.backend.backend()

tf.get_logger().setLevel("ERROR")

__all__ = ["tf", "keras", "tfmot", "FLAVOUR", "LEGACY", "BACKEND"]
