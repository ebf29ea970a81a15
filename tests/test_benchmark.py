"""The benchmark runs real training steps on a tiny config and reports every figure the table in docs/performance.md
uses; the benchmark scripts docs/ tells users to run refuse a missing file in one line."""
import json
import runpy
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from cardiac_dreamer.config import Config, apply_overrides
from cardiac_dreamer.errors import ConfigError
from cardiac_dreamer.benchmarking.loader_throughput import measure_loader
from cardiac_dreamer.benchmarking.throughput import run_benchmark
from test_reliability import one_error_line
from test_trainer import TINY_BACKBONE

REPORTED = {
    "samples_per_s", "step_time_median_s", "data_wait_median_s", "compute_median_s", "data_wait_fraction",
    "trainer_step_median_s", "bare_step_median_s", "trainer_overhead", "trainer_overhead_cpu_time",
    "step_cpu_time_median_s", "peak_rss_mb", "peak_gpu_memory_mb",
    "device", "precision", "threads", "model_gflops_per_step", "achieved_tflops", "mfu",
}


@pytest.fixture(autouse=True)
def private_disk_cache(tmp_path, monkeypatch):
    """Image packs go into this test's folder, never into the user's cache."""
    monkeypatch.setenv("CARDIAC_DREAMER_CACHE", str(tmp_path / "image_cache"))


def tiny_config(data_dir) -> Config:
    return apply_overrides(Config(), {
        "data.data_dir": str(data_dir), "data.image_size": 64, "model.backbone": TINY_BACKBONE, "model.d_model": 16,
        "model.num_heads": 2, "model.num_layers": 1, "training.batch_size": 4, "training.num_workers": 0,
    })


def test_benchmark_reports_throughput_memory_and_trainer_overhead(phantom_dir):
    result = run_benchmark(tiny_config(phantom_dir), steps=1, warmup=1, rounds=1)
    assert REPORTED <= set(result)
    assert result["device"] == "cpu" and result["precision"] == "32"
    assert result["samples_per_s"] > 0 and result["peak_rss_mb"] > 0
    assert result["step_time_median_s"] >= result["data_wait_median_s"]
    json.dumps(result)  # one JSON line


def test_benchmark_script_prints_one_json_line_and_falls_back_to_a_phantom(tmp_path, capsys):
    script = runpy.run_path(str(Path(__file__).parents[1] / "benchmarks" / "benchmark.py"))
    exit_code = script["main"]([
        "--data_dir", str(tmp_path / "missing"), "--image_size", "64", "--d_model", "16", "--num_heads", "2",
        "--num_layers", "1", "--batch_size", "2", "--num_workers", "0", "--steps", "1", "--warmup", "0",
        "--rounds", "1", "--precision", "32",
    ])
    assert exit_code == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 1 and json.loads(lines[0])["data"] == "synthetic phantom"


def test_loader_benchmark_reports_images_per_second_and_memory_for_each_store_and_worker_count(real_export):
    config = apply_overrides(tiny_config(real_export), {"training.batch_size": 2})
    results = list(measure_loader(config, stores=("memory", "disk", "decode"), workers=(0, 1), batches=2,
                                  warmup_batches=1))
    assert [(r["image_store"], r["num_workers"]) for r in results] == \
        [("memory", 0), ("memory", 1), ("disk", 0), ("disk", 1), ("decode", 0), ("decode", 1)]
    for result in results:
        assert result["images_per_s"] == 2 * result["pairs_per_s"] > 0
        assert result["main_peak_rss_mb"] > 0 and result["pairs"] == 12
        assert len(result["worker_pss_mb"]) == result["num_workers"]
    json.dumps(results)


def test_loader_benchmark_refuses_more_batches_than_the_data_holds(real_export):
    with pytest.raises(ConfigError, match="lower --batches"):
        next(measure_loader(tiny_config(real_export), batches=100))


def test_loader_benchmark_without_a_batch_count_measures_what_a_small_directory_holds(real_export):
    """``cardiac-train --benchmark --data_only`` has no --batches: 12 pairs in batches of 4 are 1 warm-up batch and
    2 measured, not a refusal; a batch larger than the data is refused naming the flag it has."""
    result = next(measure_loader(tiny_config(real_export), stores=("decode",), workers=(0,), warmup_batches=1))
    assert result["batches"] == 2
    with pytest.raises(ConfigError, match=r"lower --batch_size\)"):
        next(measure_loader(apply_overrides(tiny_config(real_export), {"training.batch_size": 16}),
                            stores=("decode",), workers=(0,)))


@pytest.mark.parametrize("script, arguments", [
    ("history_bound.py", ["absent.csv", "absent_data"]),  # a file the script opens: the operating system's error
    ("history_ridge.py", ["absent_data"]),  # a data directory the library reads: its error
    ("axis_response.py", ["absent.ckpt"]),  # a file the library reads: its error
])
def test_a_benchmark_script_given_a_missing_file_names_it_in_one_line(tmp_path, script, arguments):
    result = subprocess.run([sys.executable, str(Path(__file__).parents[1] / "benchmarks" / script),
                             *(str(tmp_path / argument) for argument in arguments)],
                            capture_output=True, text=True, timeout=120)
    one_error_line(result, str(tmp_path / arguments[0]))


def write_scores(path: Path, ratio: float) -> None:
    """A metrics.json holding what the recipe study reads: the guidance, the pixel ridge and their ratio."""
    path.mkdir(parents=True)
    errors = {"translation_error_mm": 3.0 * ratio, "rotation_error_deg": 9.0 * ratio}
    path.joinpath("metrics.json").write_text(json.dumps({
        "guidance": errors, "baselines": {"pixel_ridge": {"translation_error_mm": 3.0, "rotation_error_deg": 9.0}},
        "guidance_vs_pixel_ridge": {"mean": ratio, "worst": ratio, "worst_axis": "mae_yaw_deg"}}))


def write_study(out: Path, validation: dict, test: dict, training_seeds=(42,)) -> None:
    """Finished study runs on phantoms 1 and 2: each (candidate, checkpoint, training seed)'s ratio to the ridge, on
    phantom 2 that ratio plus 0.1 (the table must average the phantoms). The averaged checkpoint's test scores lie
    where training writes them, in the run that ``latest`` points to."""
    for phantom in (1, 2):
        for seed in training_seeds:
            for (name, checkpoint), ratios in validation.items():
                run = out / "runs" / f"{name}_phantom{phantom}_seed{seed}"
                write_scores(run / f"val_{checkpoint}", ratios[seed] + 0.1 * (phantom - 1))
                if checkpoint == "best":
                    write_scores(run / "test_best", test[name][seed])
                else:
                    write_scores(run / "run_1" / "test_evaluation", test[name][seed] + 0.01)
                    (run / "latest").symlink_to("run_1")


def study_table(out: Path, names, training_seeds, capsys) -> dict:
    """The study's printed rows, by split ("val", "test") and (candidate as printed, checkpoint)."""
    study = runpy.run_path(str(Path(__file__).parents[1] / "benchmarks" / "recipe_on_validation.py"))
    study["table"](out, names, [1, 2], training_seeds)
    rows, split = {"val": {}, "test": {}}, None
    for line in capsys.readouterr().out.splitlines():
        split = "val" if line.startswith("Validation") else "test" if line.startswith("Test") else split
        cells = [cell.strip() for cell in line.strip("|").split("|")]
        if split and len(cells) > 2 and cells[1] in ("best", "averaged"):
            rows[split][cells[0], cells[1]] = cells[2:]
    return rows


def test_the_recipe_study_chooses_on_the_validation_patients_whatever_the_test_patients_say(tmp_path, capsys):
    validation = {("steady", "best"): {42: 0.8}, ("steady", "averaged"): {42: 0.9},
                  ("lucky", "best"): {42: 1.0}, ("lucky", "averaged"): {42: 0.95}}
    write_study(tmp_path, validation, test={"steady": {42: 1.2}, "lucky": {42: 0.5}})  # the test favours "lucky"
    rows = study_table(tmp_path, ["steady", "lucky"], [42], capsys)
    assert [key for key in rows["val"] if "(chosen)" in key[0]] == [("**steady** (chosen)", "best")]
    assert rows["val"]["**steady** (chosen)", "best"][-1] == "0.850x"  # 0.8 and 0.9 on the two phantoms
    assert rows["test"]["lucky", "averaged"][-1] == "0.510x"  # read from the run that `latest` names


def test_the_recipe_study_chooses_on_the_mean_over_training_seeds_not_on_one_lucky_seed(tmp_path, capsys):
    validation = {("steady", "best"): {42: 0.80, 43: 0.80}, ("steady", "averaged"): {42: 0.90, 43: 0.90},
                  ("lucky", "best"): {42: 0.70, 43: 1.00}, ("lucky", "averaged"): {42: 0.95, 43: 0.95}}
    write_study(tmp_path, validation, test={"steady": {42: 1.0, 43: 1.0}, "lucky": {42: 1.0, 43: 1.0}},
                training_seeds=(42, 43))
    on_seed_42 = study_table(tmp_path, ["steady", "lucky"], [42], capsys)["val"]
    assert [key for key in on_seed_42 if "(chosen)" in key[0]] == [("**lucky** (chosen)", "best")]
    rows = study_table(tmp_path, ["steady", "lucky"], [42, 43], capsys)["val"]
    assert [key for key in rows if "(chosen)" in key[0]] == [("**steady** (chosen)", "best")]
    assert rows["lucky", "best"][-2:] == ["0.900x", "0.750x / 1.050x"]  # the mean, then seed 42's and seed 43's


def test_the_recipe_study_leaves_a_candidate_with_a_missing_run_out_of_the_choice(tmp_path, capsys):
    validation = {("steady", "best"): {42: 0.80, 43: 0.80}, ("steady", "averaged"): {42: 0.90, 43: 0.90},
                  ("unfinished", "best"): {42: 0.50, 43: 0.50}, ("unfinished", "averaged"): {42: 0.5, 43: 0.5}}
    write_study(tmp_path, validation, test={"steady": {42: 1.0, 43: 1.0}, "unfinished": {42: 1.0, 43: 1.0}},
                training_seeds=(42, 43))
    shutil.rmtree(tmp_path / "runs" / "unfinished_phantom2_seed43")  # still training
    rows = study_table(tmp_path, ["steady", "unfinished"], [42, 43], capsys)["val"]
    assert [key for key in rows if "(chosen)" in key[0]] == [("**steady** (chosen)", "best")]
    assert rows["unfinished", "best"][1:] == ["-", "-", "-"]  # phantom 2 lacks a seed: no cell, no mean
