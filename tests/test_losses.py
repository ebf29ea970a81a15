"""losses: SmoothL1 terms on errors in units of the training std, their weights, and what may receive gradient."""
import pytest
import torch

from cardiac_dreamer.config import LossConfig, ModelConfig
from cardiac_dreamer.losses import compute_losses, latent_loss, latent_prediction, per_sample_pose_loss
from cardiac_dreamer.models import CardiacDreamer

UNIT_STD = torch.ones(6)


def known_case():
    """Errors chosen on both sides of beta = 1: 0.5 (quadratic branch) and 3 (linear branch)."""
    outputs = {
        "at1": torch.tensor([[0.5, 0.0, 0.0, 0.0, 0.0, 0.0]], requires_grad=True),  # 0.5 -> 0.125
        "at2": torch.tensor([[3.0, 0.0, 0.0, 0.0, 0.0, 0.0]]),  # error 3 -> 3 - 0.5 = 2.5
        "at1_composed": torch.tensor([[0.5, 0.0, 2.0, 0.0, 0.0, 0.0]], requires_grad=True),  # vs at1: 2 -> 1.5
        "latent_t2_pred": torch.tensor([[[[1.0]], [[2.0]], [[4.0]]]], requires_grad=True),  # [1, 3, 1, 1]
    }
    batch = {"at1": torch.zeros(1, 6), "at2": torch.zeros(1, 6)}
    return outputs, batch


def test_terms_are_mean_smooth_l1_values():
    outputs, batch = known_case()
    losses = compute_losses(outputs, batch, UNIT_STD, LossConfig(smooth_l1_beta=1.0))
    assert losses["main_task_loss"].item() == pytest.approx(0.125 / 6)
    assert losses["aux_t2_action_loss"].item() == pytest.approx(2.5 / 6)
    assert losses["consistency_loss"].item() == pytest.approx(1.5 / 6)


def test_pose_errors_are_measured_in_units_of_the_training_std():
    outputs, batch = known_case()
    std = torch.tensor([0.5, 1.0, 1.0, 1.0, 1.0, 1.0])  # x error 0.5 mm is one std: SmoothL1(1) = 0.5
    losses = compute_losses(outputs, batch, std, LossConfig())
    assert losses["main_task_loss"].item() == pytest.approx(0.5 / 6)


def test_angle_errors_are_folded_as_the_metrics_fold_them():
    # A prediction of 179 deg for a label of -179 deg is 2 deg off, not 358; 181 and -179 are the same pose.
    std = torch.tensor([1.0, 1.0, 1.0, 10.0, 1.0, 1.0])
    labels = torch.tensor([[0.0, 0, 0, -179.0, 0, 0], [0.0, 0, 0, 181.0, 0, 0]])
    predictions = torch.tensor([[0.0, 0, 0, 179.0, 0, 0], [0.0, 0, 0, -179.0, 0, 0]], requires_grad=True)
    losses = per_sample_pose_loss(predictions, labels, std, beta=1.0)
    assert losses.tolist() == pytest.approx([0.5 * 0.2 ** 2 / 6, 0.0])
    losses.sum().backward()
    assert predictions.grad[0, 3].item() == pytest.approx(-0.2 / 10 / 6)  # a step raises 179 toward -179 + 360


def test_beta_sets_where_the_loss_turns_linear():
    outputs, batch = known_case()
    losses = compute_losses(outputs, batch, UNIT_STD, LossConfig(smooth_l1_beta=4.0))
    assert losses["aux_t2_action_loss"].item() == pytest.approx(0.5 * 3.0**2 / 4.0 / 6)  # 3 < beta: quadratic


def test_total_is_main_plus_weighted_auxiliary_terms():
    outputs, batch = known_case()
    target = torch.tensor([[[[1.0]], [[3.0]], [[2.0]]]])
    cfg = LossConfig(lambda_t2_action=0.5, lambda_consistency=0.25, lambda_latent=0.2)
    losses = compute_losses(outputs, batch, UNIT_STD, cfg, target)
    expected = (0.125 + 0.5 * 2.5 + 0.25 * 1.5) / 6 + 0.2 * losses["latent_loss"].item()
    assert losses["total_loss"].item() == pytest.approx(expected)


def test_the_consistency_term_holds_the_world_model_to_the_image_only_prediction_not_the_reverse():
    outputs, batch = known_case()
    compute_losses(outputs, batch, UNIT_STD, LossConfig(lambda_t2_action=0, lambda_latent=0,
                                                        primary_task_only=False))["consistency_loss"].backward()
    assert outputs["at1"].grad is None or not outputs["at1"].grad.any()
    assert outputs["at1_composed"].grad[0, 2] > 0


def test_unlabelled_pairs_train_only_the_label_free_terms():
    outputs, batch = known_case()
    doubled = {key: torch.cat([value, value]) for key, value in outputs.items()}
    labels = {"at1": torch.zeros(2, 6), "at2": torch.zeros(2, 6)}
    labels["at1"][1, 0] = labels["at2"][1, 0] = 100.0  # a second pair whose labels must never count
    labels["labelled"] = torch.tensor([True, False])
    losses = compute_losses(doubled, labels, UNIT_STD, LossConfig())
    assert losses["main_task_loss"].item() == pytest.approx(0.125 / 6)
    assert losses["aux_t2_action_loss"].item() == pytest.approx(2.5 / 6)
    assert losses["consistency_loss"].item() == pytest.approx(1.5 / 6)  # both pairs, no label needed


def test_primary_task_only_trains_on_the_main_term_but_reports_all():
    outputs, batch = known_case()
    losses = compute_losses(outputs, batch, UNIT_STD, LossConfig(primary_task_only=True),
                            torch.tensor([[[[1.0]], [[3.0]], [[2.0]]]]))
    assert losses["total_loss"].item() == pytest.approx(0.125 / 6)
    assert losses["aux_t2_action_loss"].item() == pytest.approx(2.5 / 6)
    assert not losses["latent_loss"].requires_grad and not losses["consistency_loss"].requires_grad


def test_label_free_pretraining_trains_the_latent_term_alone_but_reports_all():
    outputs, batch = known_case()
    losses = compute_losses(outputs, batch, UNIT_STD, LossConfig(), torch.tensor([[[[1.0]], [[3.0]], [[2.0]]]]),
                            label_free=True)
    assert losses["total_loss"].item() == pytest.approx(losses["latent_loss"].item()) and losses["total_loss"] > 0
    assert losses["main_task_loss"].item() == pytest.approx(0.125 / 6)
    losses["total_loss"].backward()
    assert outputs["at1"].grad is None and outputs["at1_composed"].grad is None
    assert outputs["latent_t2_pred"].grad.abs().sum() > 0


def test_no_gradient_flows_into_the_latent_target():
    outputs, batch = known_case()
    target = torch.tensor([[[[1.0]], [[3.0]], [[2.0]]]], requires_grad=True)
    compute_losses(outputs, batch, UNIT_STD, LossConfig(), target * 1.0)["total_loss"].backward()
    assert target.grad is None
    assert outputs["latent_t2_pred"].grad.abs().sum() > 0


def test_shrinking_the_features_cannot_lower_the_latent_loss():
    generator = torch.Generator().manual_seed(0)
    predicted = torch.randn(4, 512, 2, 2, generator=generator).relu()
    target = predicted + 0.5 * torch.randn(4, 512, 2, 2, generator=generator).relu()
    loss = latent_loss(predicted, target, beta=1.0)
    for scale in (0.1, 0.01):
        assert latent_loss(predicted * scale, target * scale, beta=1.0) >= loss * (1 - 1e-5)
        assert latent_loss(predicted * scale, target, beta=1.0) >= loss * (1 - 1e-5)


def test_direct_variant_has_zero_auxiliary_terms():
    outputs, batch = known_case()
    losses = compute_losses({"at1": outputs["at1"]}, batch, UNIT_STD, LossConfig())
    assert all(losses[name].item() == 0.0 for name in ("aux_t2_action_loss", "consistency_loss", "latent_loss"))
    assert losses["total_loss"].item() == pytest.approx(0.125 / 6)


def test_losses_are_float32_for_bf16_predictions():
    outputs, batch = known_case()
    outputs = {key: value.detach().bfloat16() for key, value in outputs.items()}
    losses = compute_losses(outputs, batch, UNIT_STD, LossConfig(),
                            torch.tensor([[[[1.0]], [[3.0]], [[2.0]]]]).bfloat16())
    assert all(value.dtype == torch.float32 for value in losses.values())


def tiny_dreamer() -> CardiacDreamer:
    config = ModelConfig(d_model=32, num_heads=2, num_layers=1, token_type="spatial")
    return CardiacDreamer(config, image_size=64).eval()


def test_a_fresh_dreamer_predicts_nothing_changes_in_the_targets_own_space():
    """loss.latent_prediction "change": the prediction starts at the target's own view of image t1 (the dreamer
    starts as the identity), so the latent term begins at "nothing changes", not at a map between two encoders."""
    model = tiny_dreamer()
    features_t1, target_t1 = torch.randn(3, 512, 2, 2), torch.randn(3, 512, 2, 2)
    with torch.no_grad():
        model.latent_predictor.weight.normal_()  # a predictor that has left the identity
        outputs = model.imagine(features_t1, torch.randn(3, 6))
    assert torch.equal(latent_prediction(outputs, target_t1), target_t1)
    assert torch.equal(latent_prediction(outputs, None), outputs["latent_t2_features"])  # "features"


def test_the_change_is_the_latent_predictors_reading_of_the_dreamed_features_less_the_t1_features():
    model = tiny_dreamer()
    with torch.no_grad():
        for parameter in (model.dreamer.move_to_delta, model.latent_predictor.weight, model.latent_predictor.bias):
            parameter.normal_()
        features_t1 = torch.randn(2, 512, 2, 2)
        outputs = model.imagine(features_t1, torch.randn(2, 6))
        expected = outputs["latent_t2_features"] - model.latent_predictor(features_t1)  # the bias cancels
    assert outputs["latent_change"].abs().max() > 0.1
    torch.testing.assert_close(outputs["latent_change"], expected, rtol=1e-4, atol=1e-4)
