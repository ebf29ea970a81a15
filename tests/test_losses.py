"""losses: SmoothL1 terms on standardized targets, their weights, and what may receive gradient."""
import pytest
import torch

from cardiac_dreamer.config import LossConfig
from cardiac_dreamer.losses import compute_losses


def known_case():
    """Errors chosen on both sides of beta = 1: 0.5 (quadratic branch) and 3 (linear branch)."""
    outputs = {
        "at1": torch.tensor([[0.5, 0.0, 0.0, 0.0, 0.0, 0.0]]),  # error 0.5 -> 0.5 * 0.5**2 / 1 = 0.125
        "at2": torch.tensor([[3.0, 0.0, 0.0, 0.0, 0.0, 0.0]]),  # error 3 -> 3 - 0.5 = 2.5
        "features_t2_pred": torch.full((1, 2, 1, 1), 2.0, requires_grad=True),  # error 2 -> 1.5 each
        "features_t2": torch.zeros(1, 2, 1, 1),
    }
    batch = {"at1": torch.zeros(1, 6), "at2": torch.zeros(1, 6)}
    return outputs, batch


def test_terms_are_mean_smooth_l1_values():
    losses = compute_losses(*known_case(), LossConfig(smooth_l1_beta=1.0))
    assert losses["main_task_loss"].item() == pytest.approx(0.125 / 6)
    assert losses["aux_t2_action_loss"].item() == pytest.approx(2.5 / 6)
    assert losses["latent_loss"].item() == pytest.approx(1.5)


def test_beta_sets_where_the_loss_turns_linear():
    losses = compute_losses(*known_case(), LossConfig(smooth_l1_beta=4.0))
    assert losses["aux_t2_action_loss"].item() == pytest.approx(0.5 * 3.0**2 / 4.0 / 6)  # 3 < beta: quadratic


def test_total_is_main_plus_weighted_auxiliary_terms():
    losses = compute_losses(*known_case(), LossConfig(lambda_t2_action=0.5, lambda_latent=0.2))
    assert losses["total_loss"].item() == pytest.approx(0.125 / 6 + 0.5 * 2.5 / 6 + 0.2 * 1.5)


def test_primary_task_only_trains_on_the_main_term_but_reports_all():
    outputs, batch = known_case()
    losses = compute_losses(outputs, batch, LossConfig(primary_task_only=True))
    assert losses["total_loss"].item() == pytest.approx(0.125 / 6)
    assert losses["aux_t2_action_loss"].item() == pytest.approx(2.5 / 6)
    assert losses["latent_loss"].item() == pytest.approx(1.5)
    assert not losses["latent_loss"].requires_grad


def test_no_gradient_flows_into_the_latent_target():
    outputs, batch = known_case()
    target = torch.zeros(1, 2, 1, 1, requires_grad=True)
    outputs["features_t2"] = target * 1.0  # a target still attached to a graph
    compute_losses(outputs, batch, LossConfig())["total_loss"].backward()
    assert target.grad is None
    assert torch.allclose(outputs["features_t2_pred"].grad, torch.full((1, 2, 1, 1), 0.2 * 1.0 / 2))


def test_direct_variant_has_zero_auxiliary_terms():
    outputs, batch = known_case()
    losses = compute_losses({"at1": outputs["at1"]}, batch, LossConfig())
    assert losses["aux_t2_action_loss"].item() == 0.0 and losses["latent_loss"].item() == 0.0
    assert losses["total_loss"].item() == pytest.approx(0.125 / 6)


def test_losses_are_float32_for_bf16_predictions():
    outputs, batch = known_case()
    outputs = {key: value.detach().bfloat16() for key, value in outputs.items()}
    losses = compute_losses(outputs, batch, LossConfig())
    assert all(value.dtype == torch.float32 for value in losses.values())


def test_imagined_features_without_a_target_are_an_error():
    outputs, batch = known_case()
    del outputs["features_t2"]
    with pytest.raises(ValueError, match="image_t2"):
        compute_losses(outputs, batch, LossConfig())
