"""The world model earns its keep on the phantom, trained briefly as a user would (the Trainer, the demo's ResNet-18
with a tiny transformer, the default loss weights): the image-only guidance of a held-out patient beats predicting the
training mean, and the imagined pose moves with the move it is given on every axis.

The training is brief (about 70 s on 2 CPU cores): phantom v4, 4 patients of 120 pairs re-drawn up to 96 frames
apart along each sweep (``data.pair_gap_frames``), 8 epochs, channel tokens. Measured with it (training
seeds 42 / 43 / 44): the guidance MAE is 0.60 / 0.68 / 0.68 of the training mean's averaged over the axes, the
move-transfer slopes 0.70-0.77 / 0.69-0.75 / 0.70-0.72 on x, y and z and 0.53-0.62 / 0.49-0.59 / 0.47-0.51 on roll,
pitch and yaw; in fp32 (a CPU without native bf16; seed 42) 0.71 and 0.57-0.86. A brief training on v4 moves the
imagined pose by half to three quarters of a move, which is what the bars below hold (the demo, on the export's
own pairs: 0.21-0.57 on the rotations, README). On the export's own pairs (no re-drawing, seed 42) the rotation
slopes were -0.38 to 0.16; 6 patients of 80 pairs held out a harder patient (guidance 0.81-0.84 of the mean's).
Said plainly, what the bars do not hold (``python benchmarks/learning_check.py``, seed 42, the baselines fitted on
the same training patients): the brief model beats the pixel ridge only on x and y (0.90x averaged over the axes;
z, roll, pitch and yaw 1.04-1.10x), and its world model predicts the next frame's latent 5.6x worse than the
target's own view of the current frame ("nothing changes"): this test shows learning, not a model worth deploying. On
phantom v3 (``python benchmarks/learning_check.py --phantom v3 --patients 6 --pairs 80``) the same training
reads 0.45 and slopes of 0.77-0.94. Channel tokens, although the demo now trains spatial ones: at d_model 32 and one
layer, spatial tokens (4 at 64 px) do not learn the move reliably in so brief a training (``python
benchmarks/learning_check.py --set model.token_type=spatial``, fp32, seeds 42 / 43 / 44: 0.66 / 0.82 / 0.63 of the
mean's error, x slope 0.74 / 0.16 / 0.72; channel, seed 42, the same day: 0.61, slopes 0.53-0.82). Their shapes and
gradients (the move's embedding included) are tested in test_models.py."""
import runpy
from pathlib import Path

import numpy as np
import pytest
import torch

from cardiac_dreamer.config import Config
from cardiac_dreamer.evaluation import evaluate
from cardiac_dreamer.evaluation.diagnostics import move_transfer_slopes
from cardiac_dreamer.task import GuidanceTask

BRIEF_TRAINING = runpy.run_path(str(Path(__file__).parents[1] / "benchmarks" / "learning_check.py"))["brief_training"]
MAX_MEAN_RATIO = 0.8  # guidance MAE / training-mean MAE, averaged over the axes
SLOPE_RANGE = (0.3, 1.4)


@pytest.fixture(scope="module")
def world_model(tmp_path_factory):
    """benchmarks/learning_check.py's brief training: phantom v4, 4 training patients of 120 pairs, 8 epochs."""
    run, held_out, _, _ = BRIEF_TRAINING(tmp_path_factory.mktemp("world_model"))
    return run.model, held_out


def test_the_image_only_guidance_of_a_held_out_patient_beats_the_training_mean(world_model):
    model, held_out = world_model
    ratio = evaluate(model, held_out, "cpu", progress=False).metrics["guidance_vs_mean"]
    assert ratio["mean"] <= MAX_MEAN_RATIO, ratio


def test_the_imagined_pose_moves_by_the_move_on_every_axis(world_model):
    model, held_out = world_model
    task = GuidanceTask(model, Config().loss, torch.device("cpu"))
    batch = task.prepare_batch(next(iter(torch.utils.data.DataLoader(held_out, batch_size=64))), train=False)
    slopes = move_transfer_slopes(model, batch["image_t1"])
    assert all(SLOPE_RANGE[0] <= slope <= SLOPE_RANGE[1] for slope in slopes), np.round(slopes, 2)
