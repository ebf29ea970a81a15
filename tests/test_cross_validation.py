"""Cross-patient k-fold cross-validation: the fold plan, the run directories and summary, resume, the
dreamer-vs-direct comparison and its baselines, end to end on the tiny phantom."""
import copy
import json
import os
import re
import shutil
from pathlib import Path

import numpy as np
import pytest

from cardiac_dreamer.cli.train_command import main
from cardiac_dreamer.cross_validation import (
    METRICS, PLAN_FILE, RESULT_FILE, CrossValidationPlan, fold_dir, format_summary, plan_cross_validation,
    read_plan, run_cross_validation, run_labels, summarize,
)
from cardiac_dreamer.data import prepare_data
from cardiac_dreamer.errors import ConfigError
from test_bad_input import snapshot
from test_trainer import tiny_config

SEED = 42  # tiny_config's training seed
FOLDERS = ("data_0513_01", "data_0513_02", "data_0513_03", "data_0513_04", "data_0513_05", "data_0514_01")


@pytest.fixture
def grouped_export(tmp_path, make_real_export) -> Path:
    """Six folders, two of them scans of one person (``anna``): five patients."""
    root = make_real_export(tmp_path / "data", patients=FOLDERS, pairs=2, size=64)
    (root / "grouping.json").write_text(json.dumps({"data_0513_01": "anna", "data_0514_01": "anna"}))
    return root


def grouped_config(data_dir, **overrides):
    return tiny_config(data_dir, **{"data.grouping_file": "grouping.json", "data.cv_folds": 2, **overrides})


def test_folds_validate_every_patient_exactly_once_and_never_split_a_group(grouped_export):
    plan = plan_cross_validation(grouped_config(grouped_export, **{"data.cv_folds": 3}))
    validated = [patient for fold in plan.folds for patient in fold.val]
    assert sorted(validated) == sorted(set(plan.grouping.values())) and len(validated) == 5
    for fold in plan.folds:
        assert sorted(fold.train + fold.val) == sorted(validated) and not set(fold.train) & set(fold.val)
    assert plan.grouping["data_0513_01"] == plan.grouping["data_0514_01"] == "anna"


def test_each_fold_selects_its_checkpoint_on_a_training_patient_never_on_a_reported_one(grouped_export):
    plan = plan_cross_validation(grouped_config(grouped_export, **{"data.cv_folds": 2}))
    for index, fold in enumerate(plan.folds):
        split = plan.run_split(index)
        assert len(split.val) == 1 and set(split.val) <= set(fold.train)
        assert not set(split.val) & set(fold.val) and not set(split.train) & set(split.val)
        assert sorted(split.train + split.val) == sorted(fold.train) and set(fold.val) <= set(split.test)


def test_seeds_are_consecutive_training_seeds(grouped_export):
    config = grouped_config(grouped_export, **{"training.seed": 7})
    assert plan_cross_validation(config, seeds=3).seeds == [7, 8, 9]


@pytest.mark.parametrize("held_out", [["data_0514_01"], ["data_0513_01", "data_0514_01"]], ids=["a scan", "both"])
def test_held_out_test_patients_are_in_no_fold(grouped_export, held_out):
    plan = plan_cross_validation(grouped_config(grouped_export, **{"data.test_patients": held_out}))
    for fold in plan.folds:
        assert fold.test == ["anna"]
        assert "anna" not in fold.train + fold.val


@pytest.mark.parametrize("extra", [["--cv", "2", "--seeds", "0"], ["--seeds", "0"]])
def test_zero_seeds_is_refused_in_one_line_before_anything_runs(grouped_export, tmp_path, capsys, extra):
    code = main(["--data_dir", str(grouped_export), "--output_dir", str(tmp_path / "out"), *extra])
    error = capsys.readouterr().err.strip()
    assert code == 2 and len(error.splitlines()) == 1 and "--seeds" in error, error
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("flag", [["--seeds", "2"], ["--compare"]])
def test_check_data_with_a_training_only_flag_says_so_not_to_add_the_cv_it_has(grouped_export, capsys, flag):
    code = main(["--data_dir", str(grouped_export), "--check_data", "--cv", "2", *flag])
    error = capsys.readouterr().err.strip()
    assert code == 2 and len(error.splitlines()) == 1, error
    assert f"{flag[0]} applies to training cross-validation folds, not to --check_data" in error


@pytest.mark.parametrize("extra, named", [
    (["--compare", "--set", "training.pretrain_epochs=1", "--max_epochs", "2"], "pretrain_epochs"),  # direct refuses
    (["--seed", "4294967295", "--seeds", "2"], "training.seed"),  # the second seed is out of range
])
def test_a_setting_one_arm_or_seed_refuses_stops_the_cv_before_any_fold_trains(grouped_export, tmp_path, capsys,
                                                                              extra, named):
    code = main(["--data_dir", str(grouped_export), "--output_dir", str(tmp_path / "out"), "--cv", "2", *extra])
    error = capsys.readouterr().err.strip()
    assert code == 2 and len(error.splitlines()) == 1 and named in error, error
    assert not (tmp_path / "out").exists()


def test_cv_needs_at_least_two_folds(grouped_export):
    with pytest.raises(ConfigError, match="cv_folds"):
        plan_cross_validation(grouped_config(grouped_export, **{"data.cv_folds": 0}))


@pytest.fixture(scope="module")
def compared(phantom_dir, tmp_path_factory):
    """A 2-fold comparison of both variants, one epoch each, on the four-patient phantom."""
    config = tiny_config(phantom_dir, **{"data.cv_folds": 2, "training.max_epochs": 1,
                                         "data.max_pairs_per_patient": 4})
    return run_cross_validation(config, tmp_path_factory.mktemp("cv"), compare=True, progress=False)


def test_cv_directory_holds_the_plan_and_a_run_per_fold_and_variant(compared):
    assert compared.cv_dir.name.startswith("cv_")
    plan = json.loads((compared.cv_dir / PLAN_FILE).read_text())
    assert plan["variants"] == ["dreamer", "direct"] and len(plan["folds"]) == 2
    for variant in ("dreamer", "direct"):
        for index in range(2):
            result = json.loads((fold_dir(compared.cv_dir, variant, index, SEED) / RESULT_FILE).read_text())
            run = compared.cv_dir / result["run_dir"]
            assert (compared.cv_dir / result["checkpoint"]).parent == run / "checkpoints"
            fold_metrics = json.loads((run / "fold_evaluation" / "metrics.json").read_text())
            assert sorted(fold_metrics["per_patient"]) == sorted(compared.summary["fold_patients"][index])
            config = json.loads((run / "experiment_config.json").read_text())["config"]
            assert config["model"]["variant"] == variant and config["data"]["cv_folds"] == 0


def test_both_variants_train_on_the_same_folds_with_the_same_seed(compared):
    splits = {}
    for variant in ("dreamer", "direct"):
        results = [json.loads((fold_dir(compared.cv_dir, variant, i, SEED) / RESULT_FILE).read_text())
                   for i in range(2)]
        configs = [json.loads((compared.cv_dir / r["run_dir"] / "experiment_config.json").read_text()) for r in results]
        splits[variant] = ([r["split"] for r in results], [c["seed"] for c in configs])
    assert splits["dreamer"] == splits["direct"]


def test_summary_has_every_fold_their_mean_and_std_and_every_patient(compared):
    summary = json.loads((compared.cv_dir / "cv_summary.json").read_text())
    assert (compared.cv_dir / "cv_summary.png").stat().st_size > 0
    for variant in ("dreamer", "direct", "move_only", "pixel_ridge", "train_mean"):
        entry = summary["results"][variant]
        assert [(run["fold"], run["seed"]) for run in entry["runs"]] == [(1, SEED), (2, SEED)]
        assert entry["per_seed"][str(SEED)] == entry["mean"]
        for metric in METRICS:
            values = [run[metric] for run in entry["runs"]]
            assert all(np.isfinite(values))
            assert entry["mean"][metric] == pytest.approx(np.mean(values))
            assert entry["std"][metric] == pytest.approx(np.std(values, ddof=1))
    assert sorted(summary["per_patient"]) == sorted(p for fold in summary["fold_patients"] for p in fold)
    assert len(summary["per_patient"]) == 4
    for row in summary["per_patient"].values():
        assert row["fold"] in (1, 2)
        assert all(set(METRICS) <= set(row[v]) for v in ("dreamer", "direct", "move_only", "pixel_ridge", "train_mean"))
    composed = summary["results"]["dreamer"]["composed_with_true_move"]["mean"]
    assert all(np.isfinite(composed[metric]) for metric in METRICS)
    assert "composed_with_true_move" not in summary["results"]["direct"]


def test_comparison_table_shows_both_variants_and_the_relative_change(compared):
    results = compared.summary["results"]
    for metric in METRICS:
        dreamer, direct = results["dreamer"]["mean"][metric], results["direct"]["mean"][metric]
        assert compared.summary["comparison"][metric] == pytest.approx((dreamer - direct) / direct)
    table = compared.summary_table()
    header = next(line for line in table.splitlines() if line.startswith("metric"))
    assert header.split() == ["metric", "dreamer", "direct", "move_only", "pixel_ridge", "train_mean", "change"]
    patients = next(line for line in table.splitlines() if line.startswith("patient (fold)"))
    assert re.search(r"deg +pixel_ridge mm / deg +train_mean", patients), patients  # columns apart, however long
    translation = next(line for line in table.splitlines() if line.startswith("translation error (mm)"))
    assert f"{results['direct']['mean']['translation_error_mm']:.3f} ±" in translation
    assert translation.endswith("%")
    assert (compared.cv_dir / "cv_summary.txt").read_text().strip() == table


def test_the_summary_table_shows_the_held_out_test_patients_figures(compared):
    """Where test patients were held out, cv_summary.txt gives their figures, not only their names."""
    summary = copy.deepcopy(compared.summary)
    summary["test_patients"] = ["phantom_09"]
    for index, entry in enumerate(summary["results"].values()):
        entry["test"] = {"mean": {metric: 10.0 + index for metric in METRICS}, "std": dict.fromkeys(METRICS, 0.5)}
    lines = format_summary(summary).splitlines()
    start = lines.index("held-out test patients (phantom_09): each run's model scored on them, mean ± std over "
                        "folds x seeds")
    assert lines[start + 1].split() == ["metric", "dreamer", "direct", "move_only", "pixel_ridge", "train_mean"]
    translation = next(line for line in lines[start:] if line.startswith("translation error (mm)"))
    assert translation.split()[3:] == ["10.000", "±", "0.500", "11.000", "±", "0.500", "12.000", "±", "0.500",
                                       "13.000", "±", "0.500", "14.000", "±", "0.500"]
    assert not any(line.startswith("held-out test patients") for line in compared.summary_table().splitlines())


@pytest.mark.parametrize("missing", ["config", "folds", "seeds"])
def test_a_plan_missing_an_entry_is_refused_naming_the_entry(compared, tmp_path, missing):
    plan = json.loads((compared.cv_dir / PLAN_FILE).read_text())
    del plan[missing]
    (tmp_path / PLAN_FILE).write_text(json.dumps(plan))
    with pytest.raises(ConfigError, match=f"cv_plan.json: not a valid cross-validation plan \\(it has no '{missing}' "
                                          "entry\\)$"):
        read_plan(tmp_path)


def copy_of(compared, tmp_path) -> Path:
    """A copy of the comparison for one test to change. Checkpoints (most of its GBs) are hard links: the code only
    ever replaces a checkpoint, never writes into one, so a test cannot change the shared original through them."""
    return Path(shutil.copytree(compared.cv_dir, tmp_path / compared.cv_dir.name, copy_function=_link_checkpoints))


def _link_checkpoints(source: str, destination: str) -> None:
    if source.endswith(".ckpt"):
        try:
            return os.link(source, destination)
        except OSError:  # a filesystem without hard links
            pass
    shutil.copy2(source, destination)


def test_the_plan_records_the_data_directory_absolute_for_resuming_from_anywhere(grouped_export, monkeypatch):
    monkeypatch.chdir(grouped_export.parent)
    plan = plan_cross_validation(grouped_config(grouped_export.name))
    assert plan.config.data.data_dir == str(grouped_export)
    assert plan.config.data.grouping_file == "grouping.json"  # inside the data directory, found there as before
    monkeypatch.chdir("/")
    stored = CrossValidationPlan.from_dict(json.loads(json.dumps(plan.to_dict())), PLAN_FILE)  # as --resume_cv reads
    assert prepare_data(stored.fold_config("dreamer", SEED).data, stored.run_split(0)).records["train"]


def test_resume_cv_retrains_only_the_fold_without_a_result(compared, tmp_path):
    cv_dir = copy_of(compared, tmp_path)
    shutil.rmtree(fold_dir(cv_dir, "direct", 1, SEED))
    kept = {path: path.stat().st_mtime_ns for path in cv_dir.glob("*/fold_*/**/*") if path.is_file()}
    resumed = run_cross_validation(None, resume_dir=cv_dir, progress=False)
    assert {path: path.stat().st_mtime_ns for path in kept} == kept
    assert (fold_dir(cv_dir, "direct", 1, SEED) / RESULT_FILE).is_file()
    assert [len(resumed.summary["results"][v]["runs"]) for v in ("dreamer", "direct")] == [2, 2]
    assert resumed.summary["results"]["move_only"] == compared.summary["results"]["move_only"]


def test_unfinished_fold_continues_its_stopped_run(compared, tmp_path):
    cv_dir = copy_of(compared, tmp_path)
    directory = fold_dir(cv_dir, "dreamer", 0, SEED)
    runs = sorted(directory.glob("run_*"))
    (directory / RESULT_FILE).unlink()
    run_cross_validation(None, resume_dir=cv_dir, progress=False)
    assert sorted(directory.glob("run_*")) == runs
    result = json.loads((directory / RESULT_FILE).read_text())
    assert (cv_dir / result["run_dir"]) == runs[0] and result["epochs_completed"] == 1


@pytest.mark.parametrize("content", ["{}", "[]"])
def test_a_fold_result_of_the_wrong_shape_is_one_line_naming_it(compared, tmp_path, capsys, content):
    cv_dir = copy_of(compared, tmp_path)
    result = fold_dir(cv_dir, "direct", 1, SEED) / RESULT_FILE
    result.write_text(content)
    code = main(["--resume_cv", str(cv_dir)])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and str(result) in err[0] and "delete it to redo the fold" in err[0], err


@pytest.mark.parametrize("damage, named", [
    (lambda result: result.update(metrics={}), "metrics.mae_x_mm"),
    (lambda result: result["metrics"].update(mae_x_mm="big"), "metrics.mae_x_mm"),
    (lambda result: result.update(fold="1"), "fold '1'"),
    (lambda result: result.update(split=None), "split"),
    (lambda result: next(iter(result["per_patient"].values())).update(rotation_error_deg=[1]), "rotation_error_deg"),
])
def test_a_damaged_fold_result_is_one_line_naming_the_field_and_the_summary_is_kept(compared, tmp_path, capsys,
                                                                                     damage, named):
    cv_dir = copy_of(compared, tmp_path)
    path = fold_dir(cv_dir, "direct", 1, SEED) / RESULT_FILE
    result = json.loads(path.read_text())
    damage(result)
    path.write_text(json.dumps(result))
    unfinished = fold_dir(cv_dir, "dreamer", 0, SEED) / RESULT_FILE  # a fold before it, left to run
    unfinished.unlink()
    summary = (cv_dir / "cv_summary.json").read_bytes()
    code = main(["--resume_cv", str(cv_dir)])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and str(path) in err[0] and named in err[0], err
    assert (cv_dir / "cv_summary.json").read_bytes() == summary and not unfinished.exists()


@pytest.mark.parametrize("flags, named", [(["--compare"], "--compare"), (["--seeds", "2"], "--seeds"),
                                          (["--output_dir", "elsewhere"], "--output_dir"),
                                          (["--max_epochs", "5"], "training.max_epochs"),
                                          (["--set", "training.lr=0.1"], "training.lr"),
                                          (["--config", "debug"], "--config")])
def test_resume_cv_refuses_flags_that_would_change_its_plan(compared, tmp_path, capsys, flags, named):
    # the stored plan runs as it was: a setting given now would be ignored without a word
    code = main(["--resume_cv", str(compared.cv_dir), *flags])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "plan stored in" in err[0] and "--cv K" not in err[0], err
    assert err[0].startswith(f"error: {named}: ")


def test_resume_cv_refuses_data_whose_people_changed_since_the_plan(compared, tmp_path, capsys):
    # the folds left to run and the baselines would read another grouping than the finished folds did
    cv_dir = copy_of(compared, tmp_path)
    text = (cv_dir / PLAN_FILE).read_text()
    plan = json.loads(text.replace('"phantom_02"', '"bob"'))  # as if a grouping file had named it so at the start
    plan["grouping"]["phantom_02"] = plan["grouping"].pop("bob")
    (cv_dir / PLAN_FILE).write_text(json.dumps(plan))
    code = main(["--resume_cv", str(cv_dir)])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1, err
    assert "the data changed since this cross-validation started (phantom_02: now phantom_02, then bob" in err[0]


@pytest.mark.parametrize("edit, named", [
    (lambda plan: plan["folds"][0].update(train=["nope"]), "fold 1 names 'nope'"),
    (lambda plan: plan["inner_val"].__setitem__(1, list(plan["folds"][1]["val"])), "fold 2's inner validation"),
])
def test_resume_cv_of_a_plan_naming_patients_it_cannot_train_on_is_one_line(compared, tmp_path, capsys, edit, named):
    cv_dir = copy_of(compared, tmp_path)
    plan = json.loads((cv_dir / PLAN_FILE).read_text())
    edit(plan)
    (cv_dir / PLAN_FILE).write_text(json.dumps(plan))
    before = snapshot(cv_dir)  # size and modification time: reading its checkpoints twice took 10 s
    code = main(["--resume_cv", str(cv_dir)])
    captured = capsys.readouterr()
    err = captured.err.strip().splitlines()
    assert code == 2 and len(err) == 1 and str(cv_dir / PLAN_FILE) in err[0] and named in err[0], err
    assert snapshot(cv_dir) == before


def test_a_cv_on_an_unreadable_image_writes_nothing(grouped_export, tmp_path, capsys):
    image = sorted((grouped_export / "data_0513_03" / "ft1").glob("*.png"))[0]
    image.write_bytes(image.read_bytes()[:40])  # cut short
    code = main(["--data_dir", str(grouped_export), "--output_dir", str(tmp_path / "out"), "--cv", "2"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and image.name in err[0], err
    assert not (tmp_path / "out").exists()


def test_a_cv_output_inside_the_data_is_refused_before_anything_is_written(grouped_export, capsys):
    before = sorted(grouped_export.rglob("*"))
    code = main(["--data_dir", str(grouped_export), "--output_dir", str(grouped_export / "data_0513_02"),
                 "--cv", "2"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "inside the data directory" in err[0], err
    assert sorted(grouped_export.rglob("*")) == before


def test_seed_free_baselines_count_each_fold_once_and_figures_name_fold_and_seed(grouped_export):
    plan = plan_cross_validation(grouped_config(grouped_export), seeds=2)

    def run(name, fold, seed, value):
        return {"variant": name, "fold": fold, "seed": seed, "split": plan.run_split(fold - 1).to_dict(),
                "samples": 2, "per_patient": {}, "metrics": {metric: value for metric in METRICS}}

    values = {(1, SEED): 1.0, (1, SEED + 1): 2.0, (2, SEED): 3.0, (2, SEED + 1): 5.0}
    results = {"dreamer": [run("dreamer", f, s, v) for (f, s), v in values.items()],
               "pixel_ridge": [run("pixel_ridge", f, s, float(f)) for f, s in values]}  # the same for each seed
    summary = summarize(plan, results)["results"]
    assert summary["pixel_ridge"]["std"]["translation_error_mm"] == pytest.approx(np.std([1.0, 2.0], ddof=1))
    assert summary["dreamer"]["std"]["translation_error_mm"] == pytest.approx(np.std(list(values.values()), ddof=1))
    assert run_labels(summary["dreamer"]["runs"]) == [f"fold {f}\nseed {s}" for f, s in values]
    assert run_labels(summary["dreamer"]["runs"][::2]) == ["fold 1", "fold 2"]  # one seed: the fold alone


def test_resume_cv_of_a_folder_without_a_plan_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="not a cross-validation directory"):
        run_cross_validation(None, resume_dir=tmp_path)


def test_cli_resume_cv_of_a_missing_directory_prints_one_error_line(tmp_path, capsys):
    code = main(["--resume_cv", str(tmp_path / "nowhere")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "cross-validation directory not found" in err[0]
    (tmp_path / "cv_plan.json").write_text("{}")
    code = main(["--resume_cv", str(tmp_path / "cv_plan.json")])  # the plan named instead of its folder
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "is a file, not a cross-validation directory" in err[0], err
