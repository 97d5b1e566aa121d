"""The one place that imports TensorFlow and Keras, the Keras :mod:`keras_lottery.flavours` chose.

- ``tf_keras`` (the default): tensorflow-model-optimization 0.8 works only with legacy
  Keras 2 (``tf_keras``), while TensorFlow 2.16+ ships Keras 3 as ``tf.keras``.
  ``TF_USE_LEGACY_KERAS`` must be set before TensorFlow is imported.
- ``keras3``: Keras 3 (``import keras``) on the backend ``KERAS_BACKEND`` names;
  tfmot is not imported (``tfmot`` is None).

Every module of the package imports TensorFlow, Keras and tfmot from here and nowhere
else. ``FLAVOUR`` says which Keras runs, ``LEGACY`` whether it is tf_keras, and
``BACKEND`` the Keras backend (``tensorflow`` for tf_keras).

TensorFlow is imported and its devices probed inside :func:`keras_lottery.startup.tensorflow_start`,
so no command prints TensorFlow's C++ start-up lines unless ``--verbose`` asks for them;
:func:`describe_devices` is the line saying what keras-lottery trains on.
"""

import os

from keras_lottery import flavours, startup

FLAVOUR = flavours.check(os.environ.get(flavours.ENVIRONMENT) or flavours.DEFAULT, flavours.ENVIRONMENT)
LEGACY = FLAVOUR == flavours.TF_KERAS
if LEGACY:
    os.environ["TF_USE_LEGACY_KERAS"] = "1"
startup.prepare_environment()


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


def _probe_devices():
    """``(kind, count, names)`` of the accelerators this process trains on: GPUs if there are
    any, else the CPU (``count`` its logical devices). Probing is what prints "failed call to
    cuInit" on a machine without a GPU, so it runs inside the quiet start (TensorFlow's
    devices are probed on JAX too: the data pipeline runs on TensorFlow)."""
    gpus = tf.config.list_physical_devices("GPU")
    if BACKEND == "jax":
        import jax

        found = jax.devices()
        gpus = [device for device in found if device.platform == "gpu"]
        if gpus:
            return "GPU", len(gpus), sorted({getattr(d, "device_kind", "GPU") for d in gpus})
        return found[0].platform.upper(), len(found), []
    if gpus:
        names = set()
        for gpu in gpus:
            try:
                names.add(tf.config.experimental.get_device_details(gpu).get("device_name") or gpu.name)
            except (ValueError, RuntimeError):
                names.add(gpu.name)
        return "GPU", len(gpus), sorted(names)
    split = tf.config.get_logical_device_configuration(tf.config.list_physical_devices("CPU")[0])
    return "CPU", len(split) if split else 1, []


with startup.tensorflow_start():
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
    DEVICES = _probe_devices()

startup.silence_python_logging(tf)


def describe_devices(devices=DEVICES):
    """One line saying what keras-lottery trains on, e.g. ``device: CPU (no GPU found)`` or
    ``device: 2 GPUs (NVIDIA A100-SXM4-40GB)``."""
    kind, count, names = devices
    if kind == "GPU":
        return f"device: {count} GPU{'s' if count > 1 else ''} ({', '.join(names)})"
    split = f", {count} logical devices" if count > 1 else ""
    return f"device: {kind}{split} (no GPU found)"


__all__ = ["tf", "keras", "tfmot", "FLAVOUR", "LEGACY", "BACKEND", "DEVICES", "describe_devices"]
