"""World-model diagnostics in every evaluation: the dreamed t2 features against the target encoder's view of image
t2 beside "no change", the dreamed at2 beside at1 plus the move, and the target encoder saved with the checkpoints
that evaluation reads."""
import copy
import dataclasses
import math

import pytest
import torch

from cardiac_dreamer.io.checkpoint import load_checkpoint
from cardiac_dreamer.config import LossConfig
from cardiac_dreamer.data import PhotometricAugment, TransitionsDataset, read_records
from cardiac_dreamer.errors import CheckpointError
from cardiac_dreamer.evaluation import evaluate, evaluate_checkpoint
from cardiac_dreamer.models import CardiacDreamer
from cardiac_dreamer.pipeline import run_training
from cardiac_dreamer.losses import latent_loss
from cardiac_dreamer.task import GuidanceTask, LatentTarget
from test_predictor import save_tiny_checkpoint
from test_trainer import tiny_config

LATENT_KEYS = {"dreamed", "copy", "target_t1", "dreamed_vs_copy", "dreamed_vs_target_t1"}
MAE_KEYS = {"mae_x_mm", "mae_y_mm", "mae_z_mm", "mae_roll_deg", "mae_pitch_deg", "mae_yaw_deg"}


@pytest.fixture(scope="module")
def trained(phantom_dir, tmp_path_factory):
    """A one-epoch dreamer trained as cardiac-train trains it, evaluated on its test patient."""
    config = tiny_config(phantom_dir, **{"training.max_epochs": 1, "data.max_pairs_per_patient": 8})
    return run_training(config, output_dir=tmp_path_factory.mktemp("runs"), progress=False)


def test_the_best_checkpoint_holds_the_latent_target_encoder(trained):
    checkpoint = load_checkpoint(trained.fit.best_checkpoint)
    backbone_keys = {key[len("backbone."):] for key in checkpoint.model_state if key.startswith("backbone.")}
    assert set(checkpoint.target_encoder) == backbone_keys


def test_a_dreamer_evaluation_reports_latent_and_at2_errors(trained):
    world = trained.test_report.metrics["world_model"]
    assert world["latent_prediction"] == "change"  # new runs' default, recorded beside the figures it shapes
    latent = world["latent_error"]
    assert LATENT_KEYS <= set(latent) and all(latent[key] > 0 for key in ("dreamed", "copy", "target_t1"))
    quartiles = latent["by_move_quartile"]
    assert len(quartiles) == 4
    assert sum(q["samples"] for q in quartiles) == trained.test_report.metrics["samples"]
    assert all(a["move_size_stds"][1] <= b["move_size_stds"][0] for a, b in zip(quartiles, quartiles[1:]))
    assert all(LATENT_KEYS | {"translation_mm", "rotation_deg"} <= set(q) for q in quartiles)
    assert set(world["at2_error"]) == {"dreamed", "at1_plus_move"}
    assert all(set(errors) == MAE_KEYS for errors in world["at2_error"].values())
    assert latent["dreamed_vs_target_t1"] == pytest.approx(latent["dreamed"] / latent["target_t1"])
    last_line = trained.test_report.summary_table().splitlines()[-1]
    assert f"dreamed / target's t1 {latent['dreamed_vs_target_t1']:.2f}x" in last_line  # the fair "no change"
    assert f"dreamed / the online backbone's t1 {latent['dreamed_vs_copy']:.2f}x" in last_line


@pytest.mark.parametrize("ratio, verdict", [
    (0.8, "(below 1: the world model predicts the next frame better than the current frame does;"),
    (1.2, "(not below 1: the world model predicts the next frame no better than the current frame does;"),
    (float("nan"), "(no ratio: the target's view of t1 has no error to compare with;"),
])
def test_the_latent_line_reads_its_verdict_from_the_ratio(trained, ratio, verdict):
    """A fixed "(below 1: ... better ...)" beside 1.20x read as a claim the figure contradicted."""
    world = copy.deepcopy(trained.test_report.metrics["world_model"])
    world["latent_error"]["dreamed_vs_target_t1"] = ratio
    report = dataclasses.replace(trained.test_report, world_model=world)
    last_line = report.summary_table().splitlines()[-1]
    shown = "n/a" if math.isnan(ratio) else f"{ratio:.2f}x"
    assert f"dreamed / target's t1 {shown} {verdict}" in last_line


def test_a_direct_model_has_no_world_model_diagnostics(phantom_dir, tmp_path):
    checkpoint = save_tiny_checkpoint(tmp_path / "direct.ckpt", phantom_dir, variant="direct")
    report, _ = evaluate_checkpoint(checkpoint, output_dir=tmp_path / "evaluation", device="cpu", progress=False)
    assert report.metrics["world_model"] is None


def test_a_checkpoint_without_a_target_encoder_gets_a_note_instead(phantom_dir, tmp_path):
    checkpoint = save_tiny_checkpoint(tmp_path / "old.ckpt", phantom_dir)
    report, _ = evaluate_checkpoint(checkpoint, output_dir=tmp_path / "evaluation", device="cpu", progress=False)
    world = report.metrics["world_model"]
    assert world["latent_error"] is None and "no target encoder" in world["note"]
    assert set(world["at2_error"]["at1_plus_move"]) == MAE_KEYS
    assert "world model latent error: n/a" in report.summary_table()


def test_an_old_checkpoint_without_the_field_still_loads(phantom_dir, tmp_path):
    path = save_tiny_checkpoint(tmp_path / "best.ckpt", phantom_dir)
    payload = torch.load(path, weights_only=True)
    del payload["target_encoder"]  # as written before the field existed
    torch.save(payload, path)
    assert load_checkpoint(path).target_encoder is None


def test_a_target_encoder_that_is_not_tensors_is_refused(phantom_dir, tmp_path):
    path = save_tiny_checkpoint(tmp_path / "best.ckpt", phantom_dir)
    payload = torch.load(path, weights_only=True)
    payload["target_encoder"] = {"conv1.weight": "not a tensor"}
    torch.save(payload, path)
    with pytest.raises(CheckpointError, match="target_encoder entry 'conv1.weight' is a str"):
        load_checkpoint(path)


def by_hand(predicted: torch.Tensor, target: torch.Tensor, beta: float) -> float:
    """The latent loss written out: layer norm over the channels at each position, SmoothL1, mean."""
    def normed(features):
        values = features.double().flatten(2)  # [B, C, h*w]
        mean = values.mean(1, keepdim=True)
        return (values - mean) / (values.var(1, unbiased=False, keepdim=True) + 1e-10).sqrt()

    difference = (normed(predicted) - normed(target)).abs()
    return float(torch.where(difference < beta, 0.5 * difference ** 2 / beta, difference - 0.5 * beta).mean())


def test_the_copy_error_is_the_latent_distance_of_the_t1_features_to_the_target_view_of_t2(phantom_dir):
    torch.manual_seed(0)
    dataset = TransitionsDataset(read_records(phantom_dir, ["phantom_01"])[:6], image_size=64)
    model = CardiacDreamer(d_model=16, num_heads=2, num_layers=1, image_size=64).eval()
    target = LatentTarget(model.backbone, momentum=0.0)
    with torch.no_grad():
        for weight in target.encoder.parameters():
            weight.add_(0.05 * torch.randn_like(weight))  # an EMA that lags the backbone
    beta = 0.5
    metrics = evaluate(model, dataset, "cpu", batch_size=4, progress=False, loss_cfg=LossConfig(smooth_l1_beta=beta),
                       target_encoder=target).metrics
    images_t1 = torch.stack([dataset[i]["image_t1"] for i in range(len(dataset))])
    images_t2 = torch.stack([dataset[i]["image_t2"] for i in range(len(dataset))])
    with torch.no_grad():
        target_t2 = target.encoder(images_t2)
        expected_copy = by_hand(model.backbone(images_t1), target_t2, beta)
        expected_target_t1 = by_hand(target.encoder(images_t1), target_t2, beta)
    latent = metrics["world_model"]["latent_error"]
    assert latent["copy"] == pytest.approx(expected_copy, rel=1e-5)
    assert latent["target_t1"] == pytest.approx(expected_target_t1, rel=1e-5)
    assert latent["copy"] != pytest.approx(latent["target_t1"], rel=1e-3)  # the two references are told apart


def perturbed_dreamer() -> CardiacDreamer:
    """A small world model whose dreamer changes the features and whose latent predictor has left the identity."""
    model = CardiacDreamer(d_model=16, num_heads=2, num_layers=1, image_size=64).eval()
    with torch.no_grad():
        model.dreamer.move_to_delta.normal_()
        model.latent_predictor.weight.add_(0.1 * torch.randn_like(model.latent_predictor.weight))
    return model


@pytest.mark.parametrize("mode", ["change", "features"])
def test_the_dreamed_error_is_measured_as_the_model_was_trained(phantom_dir, mode):
    torch.manual_seed(0)
    dataset = TransitionsDataset(read_records(phantom_dir, ["phantom_01"])[:6], image_size=64)
    model = perturbed_dreamer()
    target = LatentTarget(model.backbone, momentum=0.0)
    metrics = evaluate(model, dataset, "cpu", batch_size=4, progress=False,
                       loss_cfg=LossConfig(smooth_l1_beta=0.5, latent_prediction=mode), target_encoder=target).metrics
    samples = [dataset[i] for i in range(len(dataset))]
    images_t1, images_t2 = (torch.stack([sample[key] for sample in samples]) for key in ("image_t1", "image_t2"))
    moves = torch.stack([sample["action_change"] for sample in samples])
    with torch.no_grad():
        outputs = model.imagine(model.backbone(images_t1), moves)
        predicted = (target.encoder(images_t1) + outputs["latent_change"] if mode == "change"
                     else outputs["latent_t2_features"])
        expected = by_hand(predicted, target.encoder(images_t2), 0.5)
    assert metrics["world_model"]["latent_error"]["dreamed"] == pytest.approx(expected, rel=1e-5)


def test_a_training_step_gives_the_target_image_t1_before_its_augmentation(phantom_dir):
    torch.manual_seed(0)
    dataset = TransitionsDataset(read_records(phantom_dir, ["phantom_01"])[:4], image_size=64)
    model = perturbed_dreamer().train()
    task = GuidanceTask(model, LossConfig(), torch.device("cpu"), augment=PhotometricAugment(),
                        latent_target=LatentTarget(model.backbone, momentum=0.99))
    raw = next(iter(torch.utils.data.DataLoader(dataset, batch_size=4)))
    batch = task.prepare_batch(raw, train=True)
    clean = task.prepare_batch(raw, train=False)["image_t1"]
    assert torch.equal(batch["image_t1_clean"], clean) and not torch.equal(batch["image_t1"], clean)
    outputs, losses = task.step(model, batch)
    with torch.no_grad():
        expected = latent_loss(task.latent_target(clean) + outputs["latent_change"],
                               task.latent_target(batch["image_t2"]), LossConfig().smooth_l1_beta)
    assert float(losses["latent_loss"].detach()) == pytest.approx(float(expected), rel=1e-5)


def test_an_older_runs_checkpoint_is_evaluated_with_the_latent_prediction_it_was_trained_with(trained, tmp_path):
    payload = torch.load(trained.fit.best_checkpoint, weights_only=True)
    del payload["config"]["loss"]["latent_prediction"]  # as saved before the key existed
    torch.save(payload, tmp_path / "older.ckpt")
    payload["config"]["loss"]["latent_prediction"] = "features"
    torch.save(payload, tmp_path / "features.ckpt")
    world = {name: evaluate_checkpoint(tmp_path / f"{name}.ckpt", output_dir=tmp_path / name, device="cpu",
                                       progress=False)[0].metrics["world_model"] for name in ("older", "features")}
    assert world["older"]["latent_prediction"] == "features"
    assert world["older"]["latent_error"]["dreamed"] == world["features"]["latent_error"]["dreamed"]
    as_trained = trained.test_report.metrics["world_model"]["latent_error"]["dreamed"]  # "change"
    assert world["older"]["latent_error"]["dreamed"] != pytest.approx(as_trained)
