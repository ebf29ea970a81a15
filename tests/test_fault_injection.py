"""A real ``cardiac-train`` process is SIGKILLed again and again — mid-epoch, while a checkpoint is being written
— and resumed from ``last.ckpt`` each time. Nothing may be lost: every checkpoint on disk loads after every kill, a
kill never takes away the ``last.ckpt`` a resume needs, and the final weights and metrics are exactly those of an
uninterrupted run (CPU, deterministic).

Kill moments are tied to what the process has done (rows in metrics.csv, checkpoint files), with seeded random
offsets, so the scenario is the same on a fast machine and on a busy one.
"""
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import torch

from cardiac_dreamer.synthetic import generate_phantom
from cardiac_dreamer.io.checkpoint import load_checkpoint
from cardiac_dreamer.training.loggers import read_rows
from test_trainer import TINY_BACKBONE

SEED = 20261126
# One kill per launch, in this order:
#   "first-epoch": k training steps into a fresh run, before its first checkpoint (the run starts over);
#   "next-epoch": once this process has saved last.ckpt, k steps into the following epoch (progress is made);
#   "write:NAME": as soon as the temporary file of NAME's atomic write holds data (mid-write).
# (final_model.ckpt is not written here: the last epoch ranks in the top 3, and the final model links to its file.)
KILLS = ("first-epoch", "next-epoch", "write:cardiac_dreamer-epoch=", "write:last.ckpt", "next-epoch")
STEPS_PER_EPOCH = 4  # 16 training pairs, batch 4
PROCESS_TIMEOUT_S = 600
TRAIN_FLAGS = [
    "--image_size", "64", "--d_model", "16", "--num_heads", "2", "--num_layers", "1", "--batch_size", "4",
    "--num_workers", "0", "--max_epochs", "3", "--deterministic", "--no_progress",
    "--set", f"model.backbone={TINY_BACKBONE}",
    "--train_patients", "phantom_01,phantom_02", "--val_patients", "phantom_03",  # no test split: no evaluation
    "--set", "training.log_every_n_steps=1",  # a metrics.csv row per step: kill moments, and rows to truncate
]


class Launch:
    """One training process and what it may write: its run directory is known, or is the one it creates."""

    def __init__(self, arguments, output_dir: Path, log_path: Path, run: Path = None):
        self.output_dir, self.run = output_dir, run
        self.runs_before = set(output_dir.glob("run_*"))
        self.temporaries_before = set(self._temporaries())
        with open(log_path, "wb") as log:
            # One thread each: the reference and the killed runs train at the same time, and the thread policy
            # would give the later ones fewer threads than the first, which changes float sums.
            self.process = subprocess.Popen([sys.executable, "-m", "cardiac_dreamer.train", *arguments],
                                            stdout=log, stderr=subprocess.STDOUT,
                                            env=dict(os.environ, OMP_NUM_THREADS="1"))

    def run_dir(self):
        if self.run is None:
            new = set(self.output_dir.glob("run_*")) - self.runs_before
            self.run = new.pop() if new else None
        return self.run

    def _temporaries(self):
        run = self.run_dir()
        return [*run.glob(".*.tmp"), *run.glob("checkpoints/.*.tmp")] if run else []

    def csv_rows(self) -> int:
        try:
            return len((self.run_dir() / "logs/cardiac_dreamer_csv/metrics.csv").read_bytes().splitlines()) - 1
        except (FileNotFoundError, TypeError):
            return 0

    def last_checkpoint_id(self):
        try:
            return (self.run_dir() / "checkpoints/last.ckpt").stat().st_ino  # os.replace gives a new inode
        except (FileNotFoundError, TypeError):
            return None

    def writing(self, name: str) -> bool:
        new = [p for p in self._temporaries() if p.name.startswith(f".{name}") and p not in self.temporaries_before]
        return any(_size(path) > 0 for path in new)

    def wait_until(self, condition) -> bool:
        """Poll ``condition``; False when the process ended first."""
        deadline = time.monotonic() + PROCESS_TIMEOUT_S
        while self.process.poll() is None and time.monotonic() < deadline:
            if condition():
                return True
            time.sleep(0.005)
        return False

    def kill(self, kind: str, rng: random.Random) -> bool:
        """Deliver one kill of ``kind``; False when the process finished before the moment came."""
        steps = rng.randint(1, STEPS_PER_EPOCH)
        if kind == "first-epoch":
            ready = self.wait_until(lambda: self.csv_rows() >= steps)
        elif kind == "next-epoch":
            start = self.last_checkpoint_id()
            ready = self.wait_until(lambda: self.last_checkpoint_id() not in (start, None))
            rows = self.csv_rows()
            ready = ready and self.wait_until(lambda: self.csv_rows() >= rows + steps)
        else:
            ready = self.wait_until(lambda: self.writing(kind.split(":", 1)[1]))
        if not ready:
            return False
        if not kind.startswith("write:"):
            time.sleep(rng.uniform(0.0, 0.2))  # somewhere inside the step that follows
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=60)
        return True


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0


def assert_every_checkpoint_loads(output_dir: Path) -> None:
    for path in output_dir.glob("run_*/**/*.ckpt"):
        load_checkpoint(path)


def resumable(output_dir: Path):
    return list(output_dir.glob("run_*/checkpoints/last.ckpt"))


def test_sigkilled_training_resumes_to_the_same_weights_and_metrics_as_an_uninterrupted_run(tmp_path):
    data = tmp_path / "data"
    generate_phantom(data, num_patients=3, pairs_per_patient=8, image_size=64, seed=0)
    fresh = ["--data_dir", str(data), *TRAIN_FLAGS]
    reference_out, killed_out = tmp_path / "reference", tmp_path / "killed"
    reference = Launch([*fresh, "--output_dir", str(reference_out)], reference_out, tmp_path / "reference.log")

    rng = random.Random(SEED)
    delivered = []
    for number in range(len(KILLS) + 2):
        last = resumable(killed_out)
        assert len(last) <= 1, "a run was started over although a last.ckpt existed"
        if last:
            epoch_before = load_checkpoint(last[0]).epoch
            arguments = ["--resume_from_checkpoint", str(last[0]), "--no_progress"]
            launch = Launch(arguments, killed_out, tmp_path / f"killed_{number}.log", run=last[0].parents[1])
        else:
            killed_out.mkdir(exist_ok=True)
            launch = Launch([*fresh, "--output_dir", str(killed_out)], killed_out, tmp_path / f"killed_{number}.log")
        kind = KILLS[len(delivered)] if len(delivered) < len(KILLS) else None
        if kind is not None and launch.kill(kind, rng):
            delivered.append(kind)
            assert_every_checkpoint_loads(killed_out)
            if last:  # a kill never takes away the checkpoint a resume needs, nor moves it back
                assert load_checkpoint(last[0]).epoch >= epoch_before
            continue
        assert launch.process.wait(timeout=PROCESS_TIMEOUT_S) == 0, (tmp_path / f"killed_{number}.log").read_text()
        break
    assert delivered == list(KILLS)
    assert reference.process.wait(timeout=PROCESS_TIMEOUT_S) == 0, (tmp_path / "reference.log").read_text()

    (last,) = resumable(killed_out)
    run, straight = last.parents[1], reference.run_dir()
    assert_every_checkpoint_loads(killed_out)
    assert not list((run / "checkpoints").glob(".*.tmp")), "temporary files of interrupted saves were left behind"
    final, expected = load_checkpoint(run / "final_model.ckpt"), load_checkpoint(straight / "final_model.ckpt")
    assert os.path.samefile(run / "final_model.ckpt", next(run.glob("checkpoints/cardiac_dreamer-epoch=02-*.ckpt")))
    assert final.epoch == expected.epoch == 2 and final.global_step == expected.global_step
    # Bit-exact: the model carries the only copy of the normalization statistics, so a resumed process standardizes
    # exactly as the uninterrupted one did, and every other piece of state is restored.
    for name, tensor in expected.model_state.items():
        assert torch.equal(final.model_state[name], tensor), name
    rows, expected_rows = (read_rows(r / "logs/cardiac_dreamer_csv/metrics.csv") for r in (run, straight))
    assert rows == expected_rows
    kept = [sorted(p.name.split("-val_")[0] for p in (r / "checkpoints").glob("cardiac_dreamer-epoch=*.ckpt"))
            for r in (run, straight)]
    assert kept[0] == kept[1]  # the same epochs in the top-k (their scores are in the file names, to rounding)
    best, expected_best = (load_checkpoint(r / "checkpoints" / "best.ckpt") for r in (run, straight))
    assert best.epoch == expected_best.epoch
