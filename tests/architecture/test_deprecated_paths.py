"""Import paths of the previous release keep working for one more, with a DeprecationWarning."""

import importlib
import sys

import pytest


def test_models_detector_config_warns_and_re_exports():
    sys.modules.pop("sppnet.models.detector_config", None)
    with pytest.warns(DeprecationWarning, match="sppnet.config"):
        old = importlib.import_module("sppnet.models.detector_config")
    import sppnet.config as new

    assert old.DetectorConfig is new.DetectorConfig
    assert old.TrainingConfig is new.TrainingConfig
    assert old.load_config_file is new.load_config_file


@pytest.mark.parametrize("name", ["predict", "predict_variants"])
def test_engine_detection_predict_warns_and_is_the_inference_function(name):
    import sppnet.engine.detection as old
    import sppnet.inference as new

    with pytest.warns(DeprecationWarning, match="sppnet.inference"):
        assert getattr(old, name) is getattr(new, name)


def test_train_config_is_loop_config_with_a_warning():
    import sppnet.engine as engine
    from sppnet.engine.loop_config import LoopConfig

    with pytest.warns(DeprecationWarning, match="LoopConfig"):
        assert engine.TrainConfig is LoopConfig


def test_unknown_names_still_raise():
    import sppnet.engine.detection as detection

    with pytest.raises(AttributeError):
        detection.no_such_name  # noqa: B018
