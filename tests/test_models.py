"""models: backbone, dreamer and CardiacDreamer shapes, composition, gradients, sizes and pretrained weights."""
import subprocess
import sys
import urllib.error

import pytest
import torch
from torchvision.models import resnet18, resnet34

from cardiac_dreamer import config as config_module
from cardiac_dreamer.config import BACKBONES
from cardiac_dreamer.config import Config, LossConfig, ModelConfig, apply_overrides, load_config
from cardiac_dreamer.data.normalization import NormalizationStats
from cardiac_dreamer.errors import ConfigError
from cardiac_dreamer.geometry import undo_move
from cardiac_dreamer.models import CardiacDreamer, GuidanceModel, build_backbone, build_model, can_imagine
from cardiac_dreamer.io.checkpoint import ModelCheckpoint
from cardiac_dreamer.models.backbone import hub_file
from cardiac_dreamer.models import registry
from cardiac_dreamer.models.registry import model_from_checkpoint
from cardiac_dreamer.task import GuidanceTask, LatentTarget

TINY = {"d_model": 32, "num_heads": 2, "num_layers": 1, "dim_feedforward": 64}
STATS = NormalizationStats.from_dict(
    {
        "pose": {"mean": [10.0, -20.0, 5.0, 3.0, -4.0, 12.0], "std": [8.0, 4.0, 2.0, 10.0, 6.0, 20.0]},
        "move": {"mean": [0.5, -0.25, 1.0, 0.0, 2.0, -1.0], "std": [2.0, 1.0, 0.5, 4.0, 3.0, 8.0]},
    }
)


def tiny_model(image_size: int = 64, **overrides) -> CardiacDreamer:
    return CardiacDreamer(image_size=image_size, **{**TINY, **overrides})


def inputs(batch: int = 2, image_size: int = 64, seed: int = 0):
    generator = torch.Generator().manual_seed(seed)
    image_t1 = torch.randn(batch, 1, image_size, image_size, generator=generator)
    image_t2 = torch.randn(batch, 1, image_size, image_size, generator=generator)
    return image_t1, torch.randn(batch, 6, generator=generator), image_t2


def training_losses(model, image_t1, move, image_t2, at1=None, at2=None, latent_prediction="change"):
    """The training objective of one batch, as the trainer computes it (EMA latent target included)."""
    task = GuidanceTask(model, LossConfig(latent_prediction=latent_prediction), torch.device("cpu"),
                        latent_target=LatentTarget(model.backbone, 0.99))
    batch = {"image_t1": image_t1, "image_t2": image_t2, "action_change": move,
             "at1": torch.zeros(len(move), 6) if at1 is None else at1,
             "at2": torch.zeros(len(move), 6) if at2 is None else at2}
    return task.step(model, batch)[1]


@pytest.mark.parametrize("image_size", [64, 128, 224])
def test_backbone_maps_one_channel_images_to_512_features_at_stride_32(image_size):
    features = build_backbone().eval()(torch.randn(1, 1, image_size, image_size))
    assert features.shape == (1, 512, image_size // 32, image_size // 32)


@pytest.mark.parametrize("token_type", ["channel", "spatial"])
@pytest.mark.parametrize("image_size", [64, 128])
def test_dreamer_output_shapes(token_type, image_size):
    model = tiny_model(image_size, token_type=token_type)
    image_t1, move, _ = inputs(2, image_size)
    outputs = model(image_t1, move)
    side = image_size // 32
    assert outputs["at1"].shape == outputs["at2"].shape == outputs["at1_composed"].shape == (2, 6)
    assert outputs["features_t2_pred"].shape == (2, 512, side, side)
    assert set(model(image_t1)) == {"at1"}  # without a move: the guidance alone, no dreaming


@pytest.mark.parametrize("image_size", [64, 128])
def test_token_count_follows_token_type_and_image_size(image_size):
    positions = (image_size // 32) ** 2
    for token_type, tokens in (("channel", 512), ("spatial", positions)):
        dreamer = tiny_model(image_size, token_type=token_type).dreamer
        assert dreamer.num_tokens == tokens
        assert dreamer.pos_embed.shape == (1, tokens, TINY["d_model"])


@pytest.mark.parametrize("token_type", ["channel", "spatial"])
def test_an_untrained_dreamer_is_the_identity(token_type):
    model = tiny_model(token_type=token_type).eval()
    image_t1, move, _ = inputs()
    outputs = model(image_t1, move)
    assert torch.equal(outputs["features_t2_pred"], model.backbone(image_t1))
    assert torch.equal(outputs["at2"], outputs["at1"])


def test_direct_variant_predicts_at1_from_the_image_alone():
    model = GuidanceModel(image_size=64, **TINY).eval()
    assert not can_imagine(model) and not hasattr(model, "dreamer")
    image_t1, move, _ = inputs()
    outputs = model(image_t1, move)
    assert set(outputs) == {"at1"}
    assert outputs["at1"].shape == (2, 6)
    assert torch.equal(outputs["at1"], model(image_t1, torch.zeros_like(move))["at1"])  # the move is ignored


@pytest.mark.parametrize("composition", ["additive", "se3"])
def test_at1_composed_is_at2_with_the_move_undone_in_physical_units(composition):
    model = tiny_model(composition=composition, dropout=0.0).eval()
    model.set_normalization(STATS)
    image_t1, move, _ = inputs(4)
    move = move * 5.0  # mm and degrees
    outputs = model(image_t1, move)
    expected = undo_move(outputs["at2"].double(), move.double(), composition)
    assert torch.allclose(outputs["at1_composed"].double(), expected, atol=1e-4)


def test_poses_come_out_in_physical_units_through_the_stored_statistics():
    model = tiny_model().eval()
    image_t1, move, _ = inputs(3)
    standardized = model(image_t1)["at1"]  # identity statistics: the head's own output
    model.set_normalization(STATS)
    physical = model(image_t1)["at1"]
    expected = STATS.pose.denormalize(standardized)
    assert torch.allclose(physical, expected, atol=1e-5)


def test_poses_and_composition_are_float32_under_bf16_autocast():
    model = tiny_model(composition="se3").eval()
    model.set_normalization(STATS)
    image_t1, move, _ = inputs(3)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        outputs = model(image_t1, move)
    assert outputs["at1"].dtype == outputs["at2"].dtype == outputs["at1_composed"].dtype == torch.float32
    expected = undo_move(outputs["at2"], move.float(), "se3")
    assert torch.allclose(outputs["at1_composed"], expected, atol=1e-4)


def test_normalization_buffers_round_trip_through_state_dict():
    model = tiny_model()
    assert model.normalization.to_dict() == {
        "pose": {"mean": [0.0] * 6, "std": [1.0] * 6},
        "move": {"mean": [0.0] * 6, "std": [1.0] * 6},
    }
    model.set_normalization(STATS)
    restored = tiny_model()
    restored.load_state_dict(model.state_dict())
    assert restored.normalization.to_dict() == STATS.to_dict()


@pytest.mark.parametrize("token_type, latent_prediction", [("channel", "change"), ("spatial", "change"),
                                                            ("spatial", "features")])
def test_gradients_reach_every_trainable_parameter_once_the_dreamer_has_moved_off_the_identity(token_type,
                                                                                             latent_prediction):
    model = tiny_model(token_type=token_type)
    image_t1, move, image_t2 = inputs()
    step = dict(at1=torch.randn(2, 6), at2=torch.randn(2, 6), latent_prediction=latent_prediction)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    training_losses(model, image_t1, move, image_t2, **step)["total_loss"].backward()
    optimizer.step()  # the zero-initialized unembedding passes no gradient back until it has moved
    optimizer.zero_grad()
    training_losses(model, image_t1, move, image_t2, **step)["total_loss"].backward()
    missing = [name for name, p in model.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    # predicting a change, the latent predictor's bias cancels (it stays in the graph: data-parallel training needs it)
    assert missing == (["latent_predictor.bias"] if latent_prediction == "change" else [])


def test_frozen_backbone_layers_get_no_gradient_and_keep_batchnorm_in_eval():
    model = tiny_model(freeze_backbone_layers=2).train()  # the stem and layer1
    image_t1, move, image_t2 = inputs()
    training_losses(model, image_t1, move, image_t2)["total_loss"].backward()
    frozen = ("backbone.conv1.", "backbone.bn1.", "backbone.layer1.")
    for name, parameter in model.named_parameters():
        is_frozen = name.startswith(frozen)
        assert parameter.requires_grad is not is_frozen, name
        assert (parameter.grad is None) is is_frozen, name
    assert not model.backbone.bn1.training and not model.backbone.layer1[0].bn1.training
    assert model.backbone.layer2[0].bn1.training


@pytest.mark.parametrize("token_type", ["channel", "spatial"])
def test_channels_last_model_and_inputs_give_the_same_outputs(token_type):
    model = tiny_model(token_type=token_type).eval()
    image_t1, move, _ = inputs()
    expected = model(image_t1, move)
    model.to(memory_format=torch.channels_last)
    outputs = model(image_t1.to(memory_format=torch.channels_last), move)
    for key, value in expected.items():
        # float rounding only (different conv kernels)
        assert (outputs[key] - value).abs().max() <= 1e-4 * value.abs().max(), key


def test_overrides_are_validated_model_config_fields():
    assert tiny_model(token_type="spatial").config == ModelConfig(**TINY, token_type="spatial")
    with pytest.raises(ConfigError, match="unknown model option.*d_modell"):
        CardiacDreamer(d_modell=32)
    with pytest.raises(ConfigError, match="divisible"):
        CardiacDreamer(d_model=30, num_heads=4)
    with pytest.raises(ConfigError, match="multiple of 32"):
        CardiacDreamer(image_size=100, **TINY)


def test_overrides_apply_on_top_of_a_given_config():
    model = CardiacDreamer(ModelConfig(**TINY, composition="se3"), image_size=64, dropout=0.0)
    assert (model.config.composition, model.config.dropout, model.config.d_model) == ("se3", 0.0, 32)


def expected_parameter_count(config: ModelConfig, image_size: int) -> int:
    """The sum of the parts, from torchvision's ResNet34 and the transformer's layer shapes."""
    torchvision_resnet = sum(p.numel() for p in resnet34().parameters())
    backbone = torchvision_resnet - (512 * 1000 + 1000) - 64 * (3 - 1) * 7 * 7  # no fc; first conv 1 channel
    d, ff = config.d_model, config.dim_feedforward or 4 * config.d_model
    positions = (image_size // 32) ** 2
    tokens, token_dim = (512, positions) if config.token_type == "channel" else (positions, 512)
    move_embedding = tokens * 6 * d + tokens * 6 * token_dim  # per token: into the model, and the first-order term
    embeddings = (token_dim * d + d) + move_embedding + tokens * d + (d * token_dim + token_dim)
    layer = (3 * d * d + 3 * d) + (d * d + d) + (d * ff + ff) + (ff * d + d) + 2 * (2 * d)
    dreamer = embeddings + config.num_layers * layer + 2 * d  # + the final LayerNorm
    guidance = (512 * 4 * 1024 + 1024) + (1024 * 512 + 512) + (512 * 6 + 6)  # pooled to 2 x 2: 2048 inputs
    latent_predictor = 512 * 512 + 512  # a 1x1 convolution into the target's space
    return backbone + dreamer + guidance + latent_predictor


@pytest.mark.parametrize("token_type", ["channel", "spatial"])
def test_default_model_has_the_guide_architecture_and_parameter_count(token_type):
    model = CardiacDreamer(token_type=token_type)
    config = model.config
    assert (config.d_model, config.num_heads, config.num_layers, model.image_size) == (768, 12, 6, 224)
    assert len(model.dreamer.encoder.layers) == 6
    assert model.dreamer.encoder.layers[0].self_attn.num_heads == 12
    assert sum(p.numel() for p in model.parameters()) == expected_parameter_count(config, 224)


def test_default_model_runs_forward_and_backward_at_batch_one():
    model = CardiacDreamer()
    image_t1, move, image_t2 = inputs(1, 224)
    losses = training_losses(model, image_t1, move, image_t2)
    losses["total_loss"].backward()
    assert torch.isfinite(losses["total_loss"])
    assert all(torch.isfinite(p.grad).all() for p in model.parameters())


def saved_resnet34(path):
    state = resnet34().state_dict()  # random weights stand in for ImageNet's
    torch.save(state, path)
    return state


def test_pretrained_weights_load_from_a_local_file_with_the_rgb_kernels_averaged(tmp_path):
    state = saved_resnet34(tmp_path / "weights.pth")
    model = CardiacDreamer(pretrained=True, pretrained_weights=str(tmp_path / "weights.pth"), image_size=64, **TINY)
    assert torch.equal(model.backbone.conv1.weight, state["conv1.weight"].mean(dim=1, keepdim=True))
    assert torch.equal(model.backbone.layer4[2].conv2.weight, state["layer4.2.conv2.weight"])
    assert torch.equal(model.backbone.bn1.running_var, state["bn1.running_var"])


@pytest.fixture
def offline_hub(tmp_path, monkeypatch):
    """An empty torch hub cache (TORCH_HOME) whose downloads fail at once, as on a machine without network."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))

    def no_network(url, *args, **kwargs):
        raise urllib.error.URLError(OSError(101, "Network is unreachable"))

    monkeypatch.setattr(torch.hub, "download_url_to_file", no_network)
    return tmp_path / "torch" / "hub" / "checkpoints"


def test_pretrained_weights_load_through_torchvisions_api_from_the_hub_cache(offline_hub):
    offline_hub.mkdir(parents=True)
    # random weights stand in for ImageNet's, under the name torchvision expects and, like its 2017 files, without
    # BatchNorm's batch counters (num_batches_tracked)
    state = {key: value for key, value in resnet18().state_dict().items() if not key.endswith("num_batches_tracked")}
    torch.save(state, offline_hub / "resnet18-f37072fd.pth")
    backbone = build_backbone(pretrained=True, name="resnet18")
    assert torch.equal(backbone.layer1[0].conv1.weight, state["layer1.0.conv1.weight"])
    assert torch.equal(backbone.conv1.weight, state["conv1.weight"].mean(dim=1, keepdim=True))
    assert backbone.bn1.num_batches_tracked.item() == 0


def test_a_weights_file_holding_a_pickled_model_is_refused_naming_what_and_running_nothing(tmp_path):
    path = tmp_path / "whole_model.pth"
    torch.save(resnet18(), path)  # the whole module pickled, not its state dict
    with pytest.raises(ConfigError) as error:
        CardiacDreamer(pretrained=True, pretrained_weights=str(path), image_size=64, **TINY)
    message = str(error.value)
    assert message.startswith(f"{path}: refused to read backbone weights") and "nothing in it was run" in message
    assert "torchvision.models.resnet.ResNet" in message and "\x1b" not in message and "\n" not in message


def test_a_damaged_file_in_the_hub_cache_is_named_with_how_to_replace_it(offline_hub):
    offline_hub.mkdir(parents=True)
    (offline_hub / "resnet18-f37072fd.pth").write_bytes(b"an interrupted copy")
    with pytest.raises(ConfigError) as error:
        build_backbone(pretrained=True, name="resnet18")
    assert str(error.value).startswith(f"{offline_hub / 'resnet18-f37072fd.pth'}: cannot read the ImageNet resnet18")
    assert str(error.value).endswith("delete it to download it again")


def test_the_hub_file_names_are_torchvisions():
    assert [hub_file(name).name for name in ("resnet18", "resnet34")] == ["resnet18-f37072fd.pth",
                                                                          "resnet34-b627a593.pth"]


def test_pretrained_offline_without_a_cached_file_names_pretrained_weights(offline_hub):
    with pytest.raises(ConfigError) as error:
        CardiacDreamer(pretrained=True, image_size=64, **TINY)
    message = str(error.value)
    assert message.startswith("model.pretrained: the ImageNet resnet34 weights are not in the torch hub cache")
    assert str(offline_hub / "resnet34-b627a593.pth") in message and "Network is unreachable" in message
    assert "model.pretrained_weights" in message and "model.pretrained: false" in message and "\n" not in message


def test_the_backbone_depth_is_a_config_key_with_resnet34_the_default():
    assert ModelConfig().backbone == "resnet34"
    assert len(tiny_model().backbone.layer3) == 6  # ResNet-34: 3, 4, 6, 3 blocks
    assert len(tiny_model(backbone="resnet18").backbone.layer3) == 2  # ResNet-18: 2, 2, 2, 2
    with pytest.raises(ConfigError, match="model.backbone must be one of resnet18, resnet34, got 'resnet43' "
                                          "\\(did you mean 'resnet34'\\?\\)"):
        ModelConfig(backbone="resnet43")


@pytest.mark.parametrize("name", BACKBONES)
def test_every_backbone_the_config_accepts_builds_to_512_channels_at_stride_32(name):
    assert build_backbone(name=name)(torch.zeros(1, 1, 64, 96)).shape == (1, 512, 2, 3)


def test_commands_refusing_bad_input_import_neither_torchvision_nor_matplotlib():
    """A bad config or data folder is refused before any model or plot exists, so the commands wait ~2.5 s less."""
    code = ("import sys, cardiac_dreamer.pipeline, cardiac_dreamer.cli.train_command, "
            "cardiac_dreamer.cli.evaluate_command, cardiac_dreamer.cross_validation; "
            "print(sorted(m for m in ('torchvision', 'matplotlib') if m in sys.modules))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"


def test_a_weights_file_of_another_network_is_a_config_error(tmp_path):
    torch.save({"conv1.weight": torch.zeros(64, 3, 7, 7), "head.weight": torch.zeros(2)}, tmp_path / "other.pth")
    with pytest.raises(ConfigError, match="other.pth: entry 'head.weight' is not part of a torchvision resnet34"):
        build_backbone(weights_path=tmp_path / "other.pth")


STEM = torch.zeros(64, 3, 7, 7)
NOT_WHAT_IT_CLAIMS = {  # the file's content -> what the one line must say after "<file>: "
    "not a dict": ([STEM], "not a torchvision resnet34 state dict (it holds a list"),
    "a dict of non-tensors": ({"conv1.weight": STEM, "bn1.weight": [1.0] * 64},
                              "entry 'bn1.weight' is a list, not a tensor"),
    "a number for a tensor": ({"conv1.weight": 0.5}, "entry 'conv1.weight' is a float, not a tensor"),
    "a tensor of the wrong shape": ({"conv1.weight": STEM, "bn1.weight": torch.ones(32)},
                                    "entry 'bn1.weight' has shape [32]; a torchvision resnet34 state dict has [64]"),
    "a stem of the wrong kernel size": ({"conv1.weight": torch.zeros(64, 3, 3, 3)}, "entry 'conv1.weight' has shape"),
    "integers for weights": ({"conv1.weight": STEM, "bn1.weight": torch.ones(64, dtype=torch.int64)},
                             "entry 'bn1.weight' holds torch.int64; a torchvision resnet34 state dict holds "
                             "torch.float32"),
    "NaN weights": ({"conv1.weight": torch.full_like(STEM, float("nan"))},
                    "entry 'conv1.weight' holds NaN or infinite values"),
    "entries missing": ({"conv1.weight": STEM}, "entry 'bn1.weight' is missing"),
}


@pytest.mark.parametrize("content, words", NOT_WHAT_IT_CLAIMS.values(), ids=NOT_WHAT_IT_CLAIMS.keys())
def test_a_weights_file_that_is_not_what_it_claims_names_the_file_and_its_first_bad_entry(tmp_path, content, words):
    path = tmp_path / "weights.pth"
    torch.save(content, path)
    with pytest.raises(ConfigError) as error:
        build_backbone(weights_path=path)
    assert str(error.value).startswith(f"{path}: {words}"), str(error.value)


@pytest.mark.parametrize("variant, model_class, imagines", [("dreamer", CardiacDreamer, True),
                                                             ("direct", GuidanceModel, False)])
def test_build_model_builds_the_configured_variant_with_the_statistics(variant, model_class, imagines):
    config = apply_overrides(Config(), {"model.variant": variant, "data.image_size": 64,
                                        **{f"model.{key}": value for key, value in TINY.items()}})
    model = build_model(config, STATS)
    assert type(model) is model_class and can_imagine(model) is imagines
    assert model.normalization == STATS


def test_the_config_accepts_exactly_the_variants_the_registry_builds():
    """The config checks names without importing torch, so it keeps its own list: a variant added to one list only
    would be refused by the config or fail in build_model."""
    assert set(config_module.VARIANTS) == set(registry.VARIANTS)


class WorldModelWithoutLatentReadings(CardiacDreamer):
    """A variant written from an older development guide: its imagine() gives the poses and features only."""

    def imagine(self, features_t1, move):
        return self._imagine_poses(features_t1, move)


def test_a_world_model_whose_imagine_lacks_the_latent_readings_is_refused_while_the_latent_loss_trains():
    model = WorldModelWithoutLatentReadings(image_size=64, **TINY)
    with pytest.raises(ConfigError, match="returns no 'latent_t2_features' or 'latent_change'.*lambda_latent"):
        training_losses(model, *inputs())


def test_a_variant_class_refuses_a_config_of_another_variant():
    with pytest.raises(ConfigError, match="CardiacDreamer is the 'dreamer' variant, not 'direct'.*build_model"):
        CardiacDreamer(variant="direct", image_size=64, **TINY)


def test_checkpoint_layout_of_both_variants_is_unchanged():
    """Weights are saved by name and optimizer states by parameter order: both must stay as earlier versions wrote
    them (backbone, dreamer, head, statistics; the world model's latent predictor, added later, last), or old
    checkpoints would not load or resume."""
    for model, world_model in ((tiny_model(), True), (GuidanceModel(image_size=64, **TINY), False)):
        parameter_order = list(dict.fromkeys(name.split(".")[0] for name, _ in model.named_parameters()))
        assert parameter_order == ["backbone", *(["dreamer"] if world_model else []), "guidance",
                                   *(["latent_predictor"] if world_model else [])]
        assert {"pose_mean", "move_mean", "pose_std", "move_std"} <= set(model.state_dict())


def test_a_world_model_saved_before_the_latent_predictor_loads_with_an_identity_one(tmp_path):
    """Earlier versions used the dreamed features as the latent prediction; the identity predictor keeps that."""
    model = tiny_model()
    model.set_normalization(STATS)
    old_state = {k: v for k, v in model.state_dict().items() if not k.startswith("latent_predictor.")}
    config = apply_overrides(Config(), {**{f"model.{k}": v for k, v in TINY.items()}, "data.image_size": 64})
    checkpoint = ModelCheckpoint(config=config.to_dict(), model_state=old_state, epoch=0, global_step=0)
    loaded = model_from_checkpoint(checkpoint)
    features = torch.randn(2, 512, 2, 2)
    assert torch.equal(loaded.latent_predictor(features), features)


def test_the_small_data_preset_builds_a_resnet18_world_model_that_takes_one_step_at_224_px():
    """`--config small_data` (the guide's 3-20 patients): ResNet-18 at 224 px, a small dreamer, one training step."""
    config = load_config("small_data")
    model = build_model(config, STATS)
    assert (config.model.backbone, config.data.image_size) == ("resnet18", 224) and can_imagine(model)
    images, moves = torch.randn(2, 1, 224, 224), torch.randn(2, 6)
    outputs = model(images, moves)
    assert outputs["at1"].shape == outputs["at2"].shape == (2, 6)
    (outputs["at1"].sum() + outputs["at2"].sum()).backward()
    assert model.backbone.conv1.weight.grad is not None and model.dreamer is not None
