"""What keras-lottery does differently on Keras 3's torch backend, checked in this process
(tf_keras) by naming the backend: one step per execution and no torch.compile, an export
without a SavedModel that says why in one line, TFLite and TensorFlow's strategies refused
in one line. The whole core suite runs on torch in tests/test_keras3.py (slow)."""

import pytest

from keras_lottery import distribute, export, export_tflite
from keras_lottery.config.recipe import DistributeConfig, TrainingConfig
from keras_lottery.training import loop


@pytest.fixture
def torch_backend(monkeypatch):
    import keras_lottery.backend

    for module in (keras_lottery.backend, loop, distribute):
        monkeypatch.setattr(module, "BACKEND", "torch")
    monkeypatch.setattr(keras_lottery.backend, "LEGACY", False)


def test_torch_runs_one_step_per_execution_uncompiled(torch_backend):
    config = TrainingConfig(steps_per_execution=20, eval_every=100, jit_compile=True)
    assert loop.steps_per_execution(config) == 1 and loop.jit_compile(config) is False


def test_export_on_torch_says_in_one_line_why_there_is_no_saved_model(torch_backend, tmp_path):
    said = export.written(tmp_path)
    assert "model.keras" in said and "KERAS_BACKEND=tensorflow" in said and "\n" not in said
    assert "saved model in" not in said


def test_tflite_and_tensorflow_strategies_are_refused_on_torch(torch_backend):
    with pytest.raises(export_tflite.TFLiteError, match="TFLite export on the torch backend is not possible.*"
                                                        "KERAS_BACKEND=tensorflow"):
        export_tflite.convert(object())
    with pytest.raises(distribute.DistributeError, match="mirrored spreads training with TensorFlow's strategies.*"
                                                         "--strategy default on the torch backend"):
        distribute.create(DistributeConfig(strategy="mirrored"))
