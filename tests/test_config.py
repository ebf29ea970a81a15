"""Configuration: the guide's defaults, presets, YAML precedence and clear errors."""
import dataclasses
import math
import os
import textwrap
import typing

import pytest

from cardiac_dreamer.config import (
    Config,
    DataConfig,
    LossConfig,
    ModelConfig,
    Range,
    TrainingConfig,
    apply_overrides,
    load_config,
    merge,
    preset_names,
)
from cardiac_dreamer.cli.train_command import build_parser, resolve_config
from cardiac_dreamer.errors import ConfigError


def write(tmp_path, text, name="config.yaml"):
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


def test_defaults_are_the_guides():
    config = Config()
    assert (config.model.d_model, config.model.num_heads, config.model.num_layers) == (768, 12, 6)
    assert config.model.token_type == "spatial"  # the guide names both; spatial is ten times cheaper to imagine with
    assert (config.training.batch_size, config.training.max_epochs, config.training.lr) == (16, 150, 2e-4)
    assert config.training.early_stop_patience == 20
    assert config.training.num_workers == 4  # the guide's troubleshooting: "num_workers: 2  # Reduce from 4"
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
    path = write(tmp_path, "training:\n  batch_size: 8\n  max_epochs: 3\n")
    config = resolve_config(build_parser().parse_args(["--config", str(path), "--batch_size", "4"]))
    assert config.training.batch_size == 4  # flag wins
    assert config.training.max_epochs == 3  # YAML wins over default
    assert config.training.lr == 2e-4  # a flag left out changes nothing


def test_set_null_clears_an_optional_key_that_a_preset_set():
    assert resolve_config(build_parser().parse_args(["--config", "debug"])).data.max_pairs_per_patient == 128
    args = build_parser().parse_args(["--config", "debug", "--set", "data.max_pairs_per_patient=null",
                                      "--set", "training.gradient_clip_val=null"])
    config = resolve_config(args)
    assert config.data.max_pairs_per_patient is None and config.training.gradient_clip_val is None
    with pytest.raises(ConfigError, match="training.lr must be of type float, got None"):
        resolve_config(build_parser().parse_args(["--set", "training.lr=null"]))


@pytest.mark.parametrize("where", ["yaml", "set"])
def test_patient_lists_from_yaml_or_set_make_a_manual_split(tmp_path, where):
    if where == "yaml":
        path = write(tmp_path, "data:\n  train_patients: [a, b]\n  val_patients: [c]\n")
        args = ["--config", str(path)]
    else:
        args = ["--set", "data.train_patients=a,b", "--set", "data.val_patients=c"]
    data = resolve_config(build_parser().parse_args(args)).data
    assert data.manual_splits and (data.train_patients, data.val_patients) == (["a", "b"], ["c"])


def test_a_patient_whose_name_holds_a_comma_is_named_in_double_quotes():
    for args in (["--train_patients", '"scan,1" , b'], ["--set", 'data.train_patients=["scan,1", b]']):
        data = resolve_config(build_parser().parse_args([*args, "--val_patients", "c"])).data
        assert data.train_patients == ["scan,1", "b"]
    with pytest.raises(ConfigError, match=r'data\.train_patients: \'"scan,1, b\' has a double quote that is not '
                                          r'closed .* write a name that holds a comma in double quotes'):
        resolve_config(build_parser().parse_args(["--train_patients", '"scan,1, b']))


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


def test_disk_cache_off_is_read_as_written_although_yaml_makes_it_false(tmp_path):
    """The docs write ``disk_cache: off``; YAML 1.1 (and so ``--set data.disk_cache=off``) reads it as false."""
    assert load_config(write(tmp_path, "data:\n  disk_cache: off\n")).data.disk_cache == "off"
    assert apply_overrides(Config(), {"data.disk_cache": False}).data.disk_cache == "off"
    with pytest.raises(ConfigError, match=r"data\.disk_cache must be of type str"):
        apply_overrides(Config(), {"data.disk_cache": True})


def test_precision_spellings_are_normalized():
    for spelling, expected in [(16, "16"), ("16-mixed", "16"), (32, "32"), ("bf16-mixed", "bf16")]:
        assert merge(Config(), {"training": {"precision": spelling}}).training.precision == expected


def test_config_round_trips_through_a_plain_dict():
    config = apply_overrides(Config(), {"data.train_patients": "a,b", "model.token_type": "channel"})  # not a default
    assert config.data.train_patients == ["a", "b"]
    assert Config.from_dict(config.to_dict()) == config


def test_a_config_stored_before_latent_prediction_existed_keeps_the_objective_it_was_trained_with():
    stored = Config().to_dict()
    del stored["loss"]["latent_prediction"]  # a checkpoint's or experiment_config.json's config from before the key
    assert Config.from_stored(stored).loss.latent_prediction == "features"
    assert Config.from_dict(stored).loss.latent_prediction == "change"  # a config written now: the default
    assert Config().loss.latent_prediction == "change"  # new runs


def test_a_stored_config_that_is_not_a_mapping_is_refused_in_one_line():
    with pytest.raises(ConfigError, match="experiment_config.json: expected a mapping of sections"):
        Config.from_stored(["not", "a", "config"], source="experiment_config.json")


def test_an_unknown_latent_prediction_is_refused_in_one_line():
    with pytest.raises(ConfigError, match=r"loss\.latent_prediction must be one of change, features, got 'target'"):
        apply_overrides(Config(), {"loss.latent_prediction": "target"})


# ------------------------------------------------------------------------------------------ numeric ranges
SECTIONS = {"model": ModelConfig, "training": TrainingConfig, "loss": LossConfig, "data": DataConfig}
NUMERIC_KEYS = [
    (section, item.name)
    for section, cls in SECTIONS.items()
    for item in dataclasses.fields(cls)
    if {int, float} & {typing.get_type_hints(cls)[item.name], *typing.get_args(typing.get_type_hints(cls)[item.name])}
]
FLOAT_KEYS = [(s, k) for s, k in NUMERIC_KEYS if float in {typing.get_type_hints(SECTIONS[s])[k],
                                                             *typing.get_args(typing.get_type_hints(SECTIONS[s])[k])}]


def allowed_range(section, key) -> Range:
    return next(f.metadata["range"] for f in dataclasses.fields(SECTIONS[section]) if f.name == key)


def outside(allowed: Range, integer: bool) -> list:
    """Values just past each end of ``allowed``."""
    step = 1 if integer else 1e-9 * max(1.0, abs(allowed.high))
    low = allowed.low if allowed.low_open else allowed.low - step
    high = allowed.high if allowed.high_open else allowed.high + step
    return [low, high]


def test_every_numeric_key_of_every_section_declares_its_range():
    assert len(NUMERIC_KEYS) > 30
    for section, key in NUMERIC_KEYS:
        assert isinstance(allowed_range(section, key), Range), f"{section}.{key} has no range"


@pytest.mark.parametrize("section, key", NUMERIC_KEYS, ids=[f"{s}.{k}" for s, k in NUMERIC_KEYS])
def test_a_number_past_either_end_of_its_range_names_the_key_the_value_and_the_range(section, key):
    allowed = allowed_range(section, key)
    for value in outside(allowed, integer=(section, key) not in FLOAT_KEYS):
        with pytest.raises(ConfigError) as error:
            merge(Config(), {section: {key: value}}, "run.yaml")
        message = str(error.value)
        assert message.startswith(f"run.yaml: {section}.{key} must be in {allowed}, got "), message
        assert "\n" not in message


@pytest.mark.parametrize("section, key", FLOAT_KEYS, ids=[f"{s}.{k}" for s, k in FLOAT_KEYS])
@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf, "NaN", "inf", 10**400])
def test_nan_infinity_and_integers_beyond_any_float_are_refused_for_every_float_key(section, key, value):
    with pytest.raises(ConfigError, match=rf"{section}\.{key} must be in .*, got "):
        merge(Config(), {section: {key: value}})


def test_yaml_nan_is_refused_where_it_would_train_an_all_nan_model(tmp_path):
    with pytest.raises(ConfigError, match=r"training\.gradient_clip_val must be in \[0, 1e\+09\], got nan"):
        load_config(write(tmp_path, "training:\n  gradient_clip_val: .nan\n"))


def test_min_lr_above_lr_is_refused_because_cosine_would_climb_to_it():
    with pytest.raises(ConfigError, match=r"training\.min_lr must be in \[0, training\.lr = 0\.001\], got 0\.01"):
        merge(Config(), {"training": {"lr": 1e-3, "min_lr": 1e-2, "scheduler": "cosine"}})
    assert merge(Config(), {"training": {"lr": 1e-3, "min_lr": 1e-3}}).training.min_lr == 1e-3


def test_pretraining_needs_epochs_left_to_fine_tune_and_a_latent_term_to_train():
    with pytest.raises(ConfigError, match=r"training\.pretrain_epochs \(8\) must be below training\.max_epochs \(8\)"):
        apply_overrides(Config(), {"training.pretrain_epochs": 8, "training.max_epochs": 8})
    for key, value in (("model.variant", "direct"), ("loss.lambda_latent", 0.0)):
        with pytest.raises(ConfigError, match="needs model.variant dreamer and loss.lambda_latent > 0"):
            apply_overrides(Config(), {"training.pretrain_epochs": 2, key: value})


def test_seeds_must_fit_what_numpy_accepts():
    assert merge(Config(), {"training": {"seed": 2**32 - 1}, "data": {"split_seed": 0}}).training.seed == 2**32 - 1
    for section, key in (("training", "seed"), ("data", "split_seed")):
        with pytest.raises(ConfigError,
                           match=rf"{section}\.{key} must be in \[0, 4294967295\], got 18446744073709551616"):
            merge(Config(), {section: {key: 2**64}})


@pytest.mark.parametrize("section, key, value", [
    ("model", "d_model", 10**9), ("model", "num_layers", 10**6), ("model", "num_heads", 10**5),
    ("model", "dim_feedforward", 10**8), ("data", "image_size", 2**20), ("training", "batch_size", 10**9),
])
def test_a_checkpoint_config_asking_for_more_than_a_machine_holds_is_refused_before_any_model(section, key, value):
    stored = Config().to_dict()
    stored[section][key] = value
    with pytest.raises(ConfigError, match=rf"last\.ckpt config: {section}\.{key} must be in \[\d+, \d+\], got {value}"):
        Config.from_dict(stored, source="last.ckpt config")


def test_sizes_each_in_range_whose_product_no_machine_holds_are_refused():
    with pytest.raises(ConfigError, match=r"make a transformer of 8053 million weights; the most allowed is 1000"):
        merge(Config(), {"model": {"d_model": 4096, "num_heads": 16, "num_layers": 40}})
    assert merge(Config(), {"model": {"d_model": 1024, "num_heads": 16, "num_layers": 24}}).model.d_model == 1024


@pytest.mark.parametrize("section, key, value", [
    ("data", "data_dir", "data\0processed"), ("model", "pretrained_weights", "w\0.pt"),
    ("data", "train_patients", ["p1", "p\0"]), ("data", "test_patients", ["p\0"]),
])
def test_text_with_a_nul_character_is_refused(section, key, value):
    with pytest.raises(ConfigError, match=rf"{section}\.{key} contains a NUL character"):
        merge(Config(), {section: {key: value}})


def test_text_that_is_not_utf8_is_refused_before_it_reaches_a_json_file():
    undecodable = os.fsdecode(b"data_\xff")  # how Python hands over a non-UTF-8 command-line argument
    with pytest.raises(ConfigError, match=r"data\.data_dir is not valid UTF-8 text: 'data_\\udcff'"):
        apply_overrides(Config(), {"data.data_dir": undecodable})


def test_pathologically_nested_or_unbuildable_yaml_is_a_one_line_error(tmp_path):
    with pytest.raises(ConfigError, match="invalid YAML: nested too deeply"):
        load_config(write(tmp_path, "training:\n  batch_size: " + "[" * 100_000 + "\n"))
    with pytest.raises(ConfigError, match="invalid YAML value: month must be in 1..12"):
        load_config(write(tmp_path, "data:\n  data_dir: 2024-13-45\n"))


def test_a_huge_value_is_shortened_in_the_message():
    with pytest.raises(ConfigError) as error:
        merge(Config(), {"training": {"batch_size": "x" * 10**6}})
    assert len(str(error.value)) < 200


def test_an_override_without_a_section_is_a_config_error():
    with pytest.raises(ConfigError, match="'lr' is not of the form section.key"):
        apply_overrides(Config(), {"lr": 1e-3})


def test_a_key_or_section_written_twice_is_refused_with_its_line(tmp_path):
    path = write(tmp_path, """\
        training:
          lr: 1.0e-3
          max_epochs: 50
        training:
          batch_size: 8
        """)
    with pytest.raises(ConfigError, match=r"config.yaml: invalid YAML at line 4: 'training' is written twice"):
        load_config(path)
    with pytest.raises(ConfigError, match="line 3: 'lr' is written twice"):
        load_config(write(tmp_path, "training:\n  lr: 1.0e-3\n  lr: 2.0e-3\n", "twice.yaml"))


def test_integers_are_read_in_decimal_as_the_matching_flag_reads_them(tmp_path):
    args = build_parser().parse_args(["--set", "training.seed=042", "--set", "data.test_patients=[007, 2024]"])
    config = resolve_config(args)
    assert config.training.seed == 42 == resolve_config(build_parser().parse_args(["--seed", "042"])).training.seed
    assert config.data.test_patients == ["007", "2024"]  # names that look like numbers, kept as written
    with pytest.raises(ConfigError, match=r"must be a list of names, got \[7, 2024\] \(quote names"):
        load_config(write(tmp_path, "data:\n  test_patients: [007, 2024]\n", "numbers.yaml"))
    with pytest.raises(ConfigError, match="training.max_epochs must be of type int, got '12:30'"):
        resolve_config(build_parser().parse_args(["--set", "training.max_epochs=12:30"]))  # YAML 1.1: 750
    assert load_config(write(tmp_path, "training:\n  seed: 010\n")).training.seed == 10


def test_a_preset_name_means_the_preset_whatever_the_current_directory_holds(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "debug").mkdir()  # a folder named like a preset: --config debug and --demo still get the preset
    assert resolve_config(build_parser().parse_args(["--config", "debug"])) == load_config("debug")
    (tmp_path / "small_data").write_text("")  # a file named like one is ambiguous: refused, not read as empty
    with pytest.raises(ConfigError, match=r"small_data: both a preset and a file here; write ./small_data"):
        resolve_config(build_parser().parse_args(["--config", "small_data"]))
    (tmp_path / "mine.yaml").mkdir()
    with pytest.raises(ConfigError, match="mine.yaml: is a directory, not a config file"):
        load_config("mine.yaml")
    os.mkfifo(tmp_path / "piped.yaml")  # said "not found", though it is there
    with pytest.raises(ConfigError, match=r"piped.yaml: is a special file \(pipe, socket or device\)"):
        load_config(str(tmp_path / "piped.yaml"))


def test_rules_between_keys_are_checked_once_yaml_and_flags_are_laid_together(tmp_path):
    path = write(tmp_path, "model:\n  d_model: 64\ndata:\n  test_patients: [p5]\n")
    config = resolve_config(build_parser().parse_args(["--config", str(path), "--num_heads", "4",
                                                       "--set", "data.test_patients=[]"]))
    assert (config.model.d_model, config.model.num_heads) == (64, 4)
    assert config.data.manual_splits is False  # the list the YAML gave was cleared: no manual split is left
    with pytest.raises(ConfigError, match=r"config.yaml \+ command line: model.d_model \(64\) must be divisible by "
                                          r"model.num_heads \(5\)"):
        resolve_config(build_parser().parse_args(["--config", str(path), "--num_heads", "5"]))


def test_a_key_in_the_wrong_section_is_told_where_it_lives(tmp_path):
    with pytest.raises(ConfigError, match=r"unknown key model.lambda_latent \(it is loss.lambda_latent\)"):
        resolve_config(build_parser().parse_args(["--set", "model.lambda_latent=1"]))
    with pytest.raises(ConfigError, match=r"unknown section 'max_epochs' \(it is training.max_epochs\)"):
        load_config(write(tmp_path, "max_epochs: 5\n"))
    with pytest.raises(ConfigError, match=r"config.yaml: training.precision must be 32, 16 or bf16, got 8"):
        load_config(write(tmp_path, "training:\n  precision: 8\n"))


def test_set_wins_over_a_flag_the_later_set_over_the_earlier_and_a_second_config_is_refused(tmp_path):
    assert resolve_config(build_parser().parse_args(["--lr", "0.5", "--set", "training.lr=0.1"])).training.lr == 0.1
    assert resolve_config(build_parser().parse_args(["--set", "training.seed=1", "--set", "training.seed=2"])
                          ).training.seed == 2
    for extra in ([], ["--d_model", "768"]):  # model.lr is training.lr, whatever else is given
        args = build_parser().parse_args(["--lr", "0.5", "--set", "model.lr=0.1", *extra])
        assert resolve_config(args).training.lr == 0.1
    with pytest.raises(SystemExit) as stopped:
        build_parser().parse_args(["--config", "debug", "--config", "small_data"])
    assert stopped.value.code == 2


def test_yaml_still_reads_merge_keys_underscores_and_explicit_bases(tmp_path):
    config = load_config(write(tmp_path, "training:\n  max_epochs: 1_000\n  seed: 0x10\n"))
    assert (config.training.max_epochs, config.training.seed) == (1000, 16)
    merged = load_config(write(tmp_path, "training:\n  <<: {max_epochs: 3, seed: 5}\n  seed: 9\n", "merged.yaml"))
    assert (merged.training.max_epochs, merged.training.seed) == (3, 9)  # a merged key may be overridden


def test_set_of_a_text_key_takes_quotes_off_and_off_words_for_the_cache(tmp_path):
    config = resolve_config(build_parser().parse_args(["--set", "data.grouping_file='my groups.json'",
                                                       "--set", "data.disk_cache=false"]))
    assert (config.data.grouping_file, config.data.disk_cache) == ("my groups.json", "off")


@pytest.mark.parametrize("key", ["data.data_dir", "data.grouping_file", "data.disk_cache_dir",
                                 "model.pretrained_weights"])
def test_an_empty_path_is_refused_not_read_as_the_current_folder_or_as_no_file(key):
    # "$GROUPS" with the variable unset: read as "no grouping", one person's scans were split between train and val
    with pytest.raises(ConfigError, match=f"{key} is empty"):
        apply_overrides(Config(), {key: "  "})


@pytest.mark.parametrize("key", ["data.grouping_file", "model.pretrained_weights", "data.data_dir"])
def test_an_empty_set_of_a_path_is_refused_not_taken_for_null(key):
    # --set data.grouping_file=$GROUPS with the variable unset cleared the grouping without a word
    with pytest.raises(ConfigError, match=f"--set {key}= is empty"):
        resolve_config(build_parser().parse_args(["--data_dir", "d", "--set", f"{key}="]))
    assert resolve_config(build_parser().parse_args(["--data_dir", "d", "--set", "data.grouping_file=null"])
                          ).data.grouping_file is None  # null still clears it


def test_an_empty_grouping_file_flag_is_refused():
    with pytest.raises(ConfigError, match="data.grouping_file is empty"):
        resolve_config(build_parser().parse_args(["--data_dir", "d", "--grouping_file", ""]))
