"""Config files (sppnet.config.loader): packaged configs, the configs/ links, --set overrides."""

from pathlib import Path

import pytest

from sppnet.config import (
    TRAINING_STAGES,
    apply_overrides,
    config_path,
    load_config_file,
)
from sppnet.jobs.demo import demo_config

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("name", ["demo", "paper"])
def test_configs_folder_links_to_the_packaged_config(name):
    assert (REPO / "configs" / f"{name}.yaml").resolve() == config_path(name).resolve()
    by_name, by_path = load_config_file(name), load_config_file(REPO / "configs" / f"{name}.yaml")
    assert by_name.to_dict() == by_path.to_dict()


def test_a_file_of_the_same_name_wins_over_the_packaged_config(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "demo").write_text("model: {num_classes: 3}\n")
    assert load_config_file("demo").model.num_classes == 3


def test_the_demo_job_runs_the_packaged_demo_config_with_its_data_in_out(tmp_path):
    packaged = load_config_file("demo")
    config = demo_config(tmp_path)
    assert config.model == packaged.model and config.train == packaged.train
    assert config.data["root"] == str(tmp_path / "data")
    assert config.data["proposals_dir"] == str(tmp_path / "proposals")
    assert load_config_file(tmp_path / "config.yaml").to_dict() == config.to_dict()
    assert set(config.train.stages) == set(TRAINING_STAGES)


def test_demo_config_refuses_stages_that_train_one_head_only(tmp_path):
    with pytest.raises(ValueError, match="both heads"):
        demo_config(tmp_path, overrides=["train.stages=[finetune_fc, box_regression]"])


def test_overrides_parse_yaml_and_name_bad_keys():
    config = apply_overrides(
        load_config_file("demo"), ["train.epochs_fc=3", "model.scales=[400, 500]"]
    )
    assert config.train.epochs_fc == 3 and config.model.scales == (400, 500)
    with pytest.raises(ValueError, match="unknown section"):
        apply_overrides(config, ["solver.lr=1"])
    with pytest.raises(ValueError, match=r"section\.key=value"):
        apply_overrides(config, ["epochs_fc=3"])
    with pytest.raises(ValueError, match="unknown key"):
        apply_overrides(config, ["train.epochs=3"])


def test_unknown_stage_is_named():
    with pytest.raises(ValueError, match="unknown stage"):
        apply_overrides(load_config_file("demo"), ["train.stages=[warp]"])
