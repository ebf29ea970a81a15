"""torchrun: two CPU processes (gloo) train like one process with the same global batch, and only rank 0 writes."""
import csv
import os
import subprocess
import sys

import pytest
import torch
from test_trainer import TINY_BACKBONE

PER_RANK_BATCH = 4


def run_args(data_dir, output_dir, batch_size):
    """A tiny, fully deterministic run: a frozen backbone (its BatchNorm statistics would otherwise be per rank),
    no dropout and no augmentation (both draw from per-process RNGs)."""
    return [
        "--data_dir", str(data_dir), "--output_dir", str(output_dir), "--image_size", "64",
        "--d_model", "16", "--num_heads", "2", "--num_layers", "1", "--batch_size", str(batch_size),
        "--max_epochs", "1", "--num_workers", "0", "--precision", "32", "--device", "cpu", "--no_progress",
        "--set", "data.max_pairs_per_patient=8", "--set", "model.freeze_backbone_layers=5",
        "--set", f"model.backbone={TINY_BACKBONE}",
        "--set", "model.dropout=0", "--set", "data.augment=false",
        "--set", "data.train_ratio=0.5", "--set", "data.val_ratio=0.5", "--set", "data.test_ratio=0",
    ]


def launch(command):
    """Both runs start as fresh processes, so nothing this test process did touches their RNGs."""
    finished = subprocess.run(command, env=dict(os.environ, OMP_NUM_THREADS="1"), capture_output=True, text=True,
                              timeout=600)
    assert finished.returncode == 0, finished.stderr[-3000:]
    return finished


def epoch_rows(output_dir):
    runs = sorted(p for p in output_dir.iterdir() if p.name.startswith("run_"))
    with open(runs[0] / "logs" / "cardiac_dreamer_csv" / "metrics.csv", newline="") as stream:
        rows = list(csv.DictReader(stream))
    return runs, [row for row in rows if row.get("val_main_task_loss")]


@pytest.mark.skipif(not torch.distributed.is_available(), reason="torch built without torch.distributed")
def test_two_gloo_processes_match_one_process_with_the_same_global_batch(phantom_dir, tmp_path):
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
    ddp = launch(torchrun + ["-m", "cardiac_dreamer.train", *run_args(phantom_dir, tmp_path / "ddp", PER_RANK_BATCH)])
    launch([sys.executable, "-m", "cardiac_dreamer.train",
            *run_args(phantom_dir, tmp_path / "single", 2 * PER_RANK_BATCH)])

    ddp_runs, ddp_rows = epoch_rows(tmp_path / "ddp")
    _, single_rows = epoch_rows(tmp_path / "single")
    assert len(ddp_runs) == 1  # rank 1 joined rank 0's run directory
    assert len(ddp_rows) == 1  # and wrote no rows of its own
    assert ddp.stdout.count("run directory:") == 1  # nor printed the run's summary again
    assert ddp_rows[0]["step"] == single_rows[0]["step"]
    assert float(ddp_rows[0]["val_main_task_loss"]) == pytest.approx(
        float(single_rows[0]["val_main_task_loss"]), rel=1e-3)
