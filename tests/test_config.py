"""Configuration: the guide's defaults, presets, YAML precedence and clear errors."""
import textwrap

import pytest

from cardiac_dreamer.config import Config, apply_overrides, load_config, merge, preset_names
from cardiac_dreamer.errors import ConfigError


def write(tmp_path, text, name="config.yaml"):
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


def test_defaults_are_the_guides():
    config = Config()
    assert (config.model.d_model, config.model.num_heads, config.model.num_layers) == (768, 12, 6)
    assert config.model.token_type == "channel"
    assert (config.training.batch_size, config.training.max_epochs, config.training.lr) == (16, 150, 2e-4)
    assert config.training.early_stop_patience == 20
    assert (config.loss.lambda_latent, config.loss.lambda_t2_action, config.loss.smooth_l1_beta) == (0.2, 1.0, 1.0)
    assert config.loss.primary_task_only is False
    assert (config.data.train_ratio, config.data.val_ratio, config.data.test_ratio) == (0.70, 0.15, 0.15)


def test_presets_load_by_name_and_by_guide_path():
    assert {"debug", "production"} <= set(preset_names())
    assert load_config("debug").model.d_model < 768
    assert load_config("configs/production.yaml") == load_config("production")


def test_every_yaml_snippet_of_the_guide_loads(tmp_path):
    snippets = [
        "training:\n  batch_size: 8\n  accumulate_grad_batches: 2\n",
        "training:\n  num_workers: 2\n",
        "training:\n  precision: 16\n  batch_size: 4\n",
        "model:\n  lr: 2.0e-4\n\ntraining:\n  batch_size: 16\n  max_epochs: 100\n  early_stop_patience: 15\n",
    ]
    configs = [load_config(write(tmp_path, text, f"s{i}.yaml")) for i, text in enumerate(snippets)]
    assert configs[0].training.accumulate_grad_batches == 2
    assert configs[2].training.precision == "16"
    assert configs[3].training.lr == 2e-4 and configs[3].training.max_epochs == 100


def test_flags_override_yaml_which_overrides_defaults(tmp_path):
    config = load_config(write(tmp_path, "training:\n  batch_size: 8\n  max_epochs: 3\n"))
    config = apply_overrides(config, {"training.batch_size": 4, "training.lr": None})
    assert config.training.batch_size == 4  # flag wins
    assert config.training.max_epochs == 3  # YAML wins over default
    assert config.training.lr == 2e-4  # untouched default


def test_unknown_key_names_the_key_and_the_closest_valid_one(tmp_path):
    with pytest.raises(ConfigError, match=r"training\.bach_size.*batch_size"):
        load_config(write(tmp_path, "training:\n  bach_size: 8\n"))


def test_unknown_section_is_an_error(tmp_path):
    with pytest.raises(ConfigError, match="trainig.*training"):
        load_config(write(tmp_path, "trainig:\n  batch_size: 8\n"))


@pytest.mark.parametrize("text, key", [
    ("training:\n  batch_size: eight\n", "training.batch_size"),
    ("loss:\n  primary_task_only: 3\n", "loss.primary_task_only"),
    ("model:\n  d_model: 1.5\n", "model.d_model"),
    ("training:\n  precision: 12\n", "precision"),
    ("model:\n  token_type: pixels\n", "model.token_type"),
])
def test_wrong_types_and_values_name_the_key(tmp_path, text, key):
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        load_config(write(tmp_path, text))


def test_bad_yaml_and_missing_file_are_one_line_errors(tmp_path):
    with pytest.raises(ConfigError, match=r"config\.yaml: invalid YAML at line \d"):
        load_config(write(tmp_path, "training:\n  batch_size: [8\n"))
    with pytest.raises(ConfigError, match="not found|no such config"):
        load_config(tmp_path / "missing.yaml")


def test_precision_spellings_are_normalized():
    for spelling, expected in [(16, "16"), ("16-mixed", "16"), (32, "32"), ("bf16-mixed", "bf16")]:
        assert merge(Config(), {"training": {"precision": spelling}}).training.precision == expected


def test_config_round_trips_through_a_plain_dict():
    config = apply_overrides(Config(), {"data.train_patients": "a,b", "model.token_type": "spatial"})
    assert config.data.train_patients == ["a", "b"]
    assert Config.from_dict(config.to_dict()) == config
