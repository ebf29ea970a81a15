"""TransitionsDataset and image transforms: 1-channel tensors, each image decoded once, precise decoding errors."""
import dataclasses
import logging
import threading

import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader

import cardiac_dreamer.data.dataset as dataset_module
import cardiac_dreamer.data.transforms as transforms
from cardiac_dreamer.config import DataConfig
from cardiac_dreamer.data import (
    IMAGE_MEAN,
    IMAGE_STD,
    PhotometricAugment,
    TransitionsDataset,
    build_datasets,
    images_to_float,
    prepare_data,
    read_grayscale,
    read_records,
)
from cardiac_dreamer.errors import DataError

PATIENT = "data_0513_01"


@pytest.fixture(autouse=True)
def private_disk_cache(tmp_path, monkeypatch):
    """Datasets over budget pack their images into this test's folder, never into the user's cache."""
    monkeypatch.setenv("CARDIAC_DREAMER_CACHE", str(tmp_path / "image_cache"))


@pytest.fixture
def export_224(tmp_path, make_real_export):
    """One patient at the real export's size: RGB 224x224 PNGs."""
    return make_real_export(tmp_path / "data", patients=(PATIENT,), pairs=3, size=224)


def make_dataset(data_dir, **kwargs):
    records = read_records(data_dir)
    return TransitionsDataset(records, **kwargs)


@pytest.mark.parametrize("size", [64, 224])
def test_real_export_items_are_one_channel_at_the_configured_size(export_224, size):
    item = make_dataset(export_224, image_size=size)[0]
    for key in ("image_t1", "image_t2"):
        assert item[key].shape == (1, size, size) and item[key].dtype == torch.float32
    for key in ("action_change", "at1", "at2"):
        assert item[key].shape == (6,) and item[key].dtype == torch.float32
    assert (item["patient_id"], item["index"]) == (PATIENT, 0)


def test_uint8_items_hold_the_gray_signal_of_the_rgb_file(export_224):
    dataset = make_dataset(export_224, image_size=224, normalize_images=False)
    item = dataset[1]
    expected = np.asarray(Image.open(dataset.records[1].image_t2))[..., 0]  # R = G = B
    assert item["image_t2"].dtype == torch.uint8
    assert np.array_equal(item["image_t2"][0].numpy(), expected)


def test_normalized_items_are_images_to_float_of_the_uint8_items(export_224):
    raw = make_dataset(export_224, image_size=64, normalize_images=False)[2]
    normalized = make_dataset(export_224, image_size=64)[2]
    assert torch.equal(normalized["image_t1"], images_to_float(raw["image_t1"]))


def test_labels_are_served_in_mm_and_degrees_for_the_model_to_standardize(export_224):
    dataset = make_dataset(export_224, image_size=64)
    record, item = dataset.records[1], dataset[1]
    for key, values in (("at1", record.at1), ("action_change", record.action_change), ("at2", record.at2)):
        assert item[key].dtype == torch.float32
        assert np.allclose(item[key].numpy(), values, atol=1e-4), key
    assert item["labelled"]


def test_only_the_named_patients_pairs_are_labelled(real_export):
    records = read_records(real_export)
    dataset = TransitionsDataset(records, image_size=32, labelled_patients=["data_0513_02"])
    assert [bool(dataset[i]["labelled"]) for i in range(len(dataset))] == \
        [record.patient_id == "data_0513_02" for record in records]


def count_decodes(monkeypatch):
    calls = []

    def counting(path, size):
        calls.append(path)
        return read_grayscale(path, size)

    monkeypatch.setattr(dataset_module, "read_grayscale", counting)
    return calls


def test_cache_decodes_each_distinct_image_once(real_export, monkeypatch):
    records = read_records(real_export)
    # Chain pairs the way exports often do: the t2 image of one pair is the t1 image of the next.
    chained = [records[0]] + [dataclasses.replace(r, image_t1=p.image_t2) for p, r in zip(records, records[1:])]
    calls = count_decodes(monkeypatch)
    dataset = TransitionsDataset(chained, image_size=32)
    for i in range(len(dataset)):
        dataset[i]
    assert len(calls) == len(set(calls)) == dataset.num_images == len(chained) + 1


def test_cached_and_uncached_items_are_identical(real_export):
    cached = make_dataset(real_export, image_size=32)
    lazy = make_dataset(real_export, image_size=32, cache_images=False)
    for i in (0, 5, len(cached) - 1):
        a, b = cached[i], lazy[i]
        assert a.keys() == b.keys()
        assert all(torch.equal(a[k], b[k]) if torch.is_tensor(a[k]) else a[k] == b[k] for k in a)


def test_without_a_disk_cache_images_over_budget_decode_on_demand(real_export, monkeypatch, caplog):
    calls = count_decodes(monkeypatch)
    with caplog.at_level(logging.INFO):
        dataset = make_dataset(real_export, image_size=32, cache_budget_mb=0.001, disk_cache="off")
    assert "image cache off" in caplog.text and dataset.cache_mb == 0.0 and dataset.image_store == "decode"
    assert calls == []
    dataset[0]
    assert len(calls) == 2


def test_cache_logs_its_size(real_export, caplog):
    with caplog.at_level(logging.INFO):
        dataset = make_dataset(real_export, image_size=32)
    assert f"{dataset.num_images} decoded images in memory (" in caplog.text


def _corrupt(path):
    path.write_bytes(b"this is not a png")


def _truncate(path):
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


@pytest.mark.parametrize("damage, problem", [(_corrupt, "cannot decode"), (_truncate, "truncated")])
def test_undecodable_image_fails_at_construction_naming_image_file_and_entry(real_export, damage, problem):
    records = read_records(real_export)
    damage(records[2].image_t2)
    with pytest.raises(DataError) as error:
        TransitionsDataset(records, image_size=32)
    message = str(error.value)
    assert "\n" not in message
    assert f"{records[2].source}: entry 2:" in message and str(records[2].image_t2) in message
    assert problem in message


def test_undecodable_image_without_cache_fails_when_the_item_is_read(real_export):
    records = read_records(real_export)
    _truncate(records[1].image_t1)
    dataset = TransitionsDataset(records, image_size=32, cache_images=False)
    assert dataset.image_store == "decode"
    dataset[0]
    with pytest.raises(DataError, match="entry 1: .*truncated"):
        dataset[1]


def test_dataloader_with_workers_collates_items(real_export):
    dataset = make_dataset(real_export, image_size=32, normalize_images=False)
    batch = next(iter(DataLoader(dataset, batch_size=4, num_workers=2)))
    assert batch["image_t1"].shape == (4, 1, 32, 32) and batch["image_t1"].dtype == torch.uint8
    assert batch["patient_id"] == [PATIENT] * 4
    assert torch.equal(batch["index"], torch.arange(4))


@pytest.mark.parametrize(
    "mode, extension",
    [("L", "png"), ("L", "jpg"), ("RGB", "jpg"), ("RGBA", "png"), ("P", "png"), ("LA", "png")],
)
def test_read_grayscale_returns_one_uint8_channel_for_any_mode(tmp_path, mode, extension):
    path = tmp_path / f"image.{extension}"
    Image.new("RGB", (100, 80), (120, 120, 120)).convert(mode).save(path)
    image = read_grayscale(path, 64)
    assert image.shape == (64, 64) and image.dtype == np.uint8
    assert abs(int(image.mean()) - 120) <= 2


def test_read_grayscale_scales_16_bit_images_instead_of_clipping(tmp_path):
    path = tmp_path / "sixteen.png"
    Image.fromarray(np.array([[0, 32896], [65535, 257]], dtype=np.uint16)).save(path)
    assert read_grayscale(path, 2).tolist() == [[0, 128], [255, 1]]


def test_training_on_12_bit_values_in_16_bit_files_says_so_once(tmp_path, monkeypatch, caplog):
    """Only --check_data used to warn: a run trained on gray levels 0-16 without a word."""
    monkeypatch.setattr(transforms, "_TWELVE_BIT_WARNED", threading.Event())
    paths = [tmp_path / f"twelve_{index}.png" for index in range(2)]
    for path in paths:
        Image.fromarray(np.array([[0, 4080], [2048, 16]], dtype=np.uint16)).save(path)
    with caplog.at_level(logging.WARNING, logger="cardiac_dreamer.data.transforms"):
        assert read_grayscale(paths[0], 2).max() <= 16
        read_grayscale(paths[1], 2)
    (record,) = caplog.records
    assert str(paths[0]) in record.getMessage() and "12-bit" in record.getMessage()


def test_read_grayscale_reads_a_big_endian_16_bit_tiff(tmp_path):
    path = tmp_path / "sixteen.tif"
    values = np.array([[0, 32896], [65535, 257]], dtype=">u2")
    Image.frombytes("I;16B", (2, 2), values.tobytes()).save(path)
    assert Image.open(path).mode == "I;16B"
    assert read_grayscale(path, 2).tolist() == [[0, 128], [255, 1]]


@pytest.mark.parametrize("image, transparent", [
    (Image.new("L", (8, 8), 100), 100),
    (Image.fromarray(np.full((8, 8), 1000, dtype=np.uint16)), 1000),
    (Image.new("RGB", (8, 8), (10, 20, 30)), (10, 20, 30)),
])
def test_a_transparent_colour_in_any_mode_is_refused(tmp_path, image, transparent):
    path = tmp_path / "transparent.png"
    image.save(path, transparency=transparent)
    with pytest.raises(DataError, match="transparent pixels"):
        read_grayscale(path, 8)


def test_a_transparent_colour_no_pixel_uses_is_no_transparency(tmp_path):
    path = tmp_path / "opaque.png"
    Image.new("RGB", (8, 8), (120, 120, 120)).save(path, transparency=(1, 2, 3))
    assert read_grayscale(path, 8).mean() == pytest.approx(120, abs=1)


def test_an_image_the_system_will_not_open_is_a_read_error_not_a_decoding_one(tmp_path):
    with pytest.raises(DataError) as error:
        read_grayscale(tmp_path, 64)  # a directory: no file to decode
    assert str(error.value) == f"{tmp_path}: image is a directory, not a regular file"


def test_read_grayscale_of_a_missing_file_names_it(tmp_path):
    with pytest.raises(DataError, match="missing.png: image not found"):
        read_grayscale(tmp_path / "missing.png", 64)


def test_images_to_float_normalizes_batches():
    images = torch.tensor([0, 255], dtype=torch.uint8).view(2, 1, 1, 1).expand(2, 1, 4, 4)
    result = images_to_float(images)
    assert result.dtype == torch.float32 and result.shape == (2, 1, 4, 4)
    assert result[0].unique().item() == pytest.approx(-IMAGE_MEAN / IMAGE_STD)
    assert result[1].unique().item() == pytest.approx((1 - IMAGE_MEAN) / IMAGE_STD)


def test_photometric_augment_is_reproducible_per_sample_and_keeps_shape():
    images = images_to_float(torch.full((3, 1, 16, 16), 128, dtype=torch.uint8))
    augment = PhotometricAugment()
    torch.manual_seed(0)
    first = augment(images)
    torch.manual_seed(0)
    assert torch.equal(augment(images), first)
    assert first.shape == images.shape and not torch.equal(first, images)
    assert not torch.allclose(first[0].mean(), first[1].mean())


def test_photometric_augment_is_the_identity_in_eval_mode():
    images = torch.randn(2, 1, 8, 8)
    assert PhotometricAugment().eval()(images) is images


def listing(directory):
    return sorted((str(p.relative_to(directory)), p.stat().st_size, p.stat().st_mtime_ns) for p in directory.rglob("*"))


def test_preparing_and_loading_writes_nothing_into_the_data_folder(real_export):
    before = listing(real_export)
    cfg = DataConfig(data_dir=str(real_export), image_size=32)
    prepared = prepare_data(cfg)
    for dataset in build_datasets(prepared, cfg).values():
        dataset[0]
    assert listing(real_export) == before


def test_build_datasets_skips_empty_splits(real_export):
    cfg = DataConfig(data_dir=str(real_export), image_size=32, train_ratio=0.6, val_ratio=0.4, test_ratio=0.0)
    prepared = prepare_data(cfg)
    datasets = build_datasets(prepared, cfg, normalize_images=False)
    assert set(datasets) == {"train", "val"}
    assert datasets["val"][0]["image_t1"].dtype == torch.uint8


def test_a_label_fraction_keeps_the_labels_of_a_seeded_subset_of_training_patients(phantom_dir):
    cfg = DataConfig(data_dir=str(phantom_dir), image_size=64, label_fraction=0.3, manual_splits=True,
                     train_patients=["phantom_01", "phantom_02", "phantom_03"], val_patients=["phantom_04"])
    prepared = prepare_data(cfg)
    assert prepared.labelled_patients == prepare_data(cfg).labelled_patients  # seeded
    (labelled,) = prepared.labelled_patients  # round(0.3 * 3) = 1 patient
    train = build_datasets(prepared, cfg)["train"]
    flags = {train.records[i].patient_id: bool(train[i]["labelled"]) for i in range(len(train))}
    assert flags == {patient: patient == labelled for patient in cfg.train_patients}
    pose_means = np.mean([r.at1 for r in prepared.records["train"] if r.patient_id == labelled] +
                         [r.at2 for r in prepared.records["train"] if r.patient_id == labelled], axis=0)
    assert np.allclose(prepared.stats.pose.mean, pose_means)  # the unlabelled patients' poses are never used
    assert all(bool(build_datasets(prepared, cfg)["val"][i]["labelled"]) for i in range(3))


def test_phantom_loads_through_the_whole_pipeline(phantom_dir):
    cfg = DataConfig(data_dir=str(phantom_dir), image_size=64)
    prepared = prepare_data(cfg)
    assert sorted(prepared.samples_per_patient.values()) == [12, 12, 12, 12]
    train = build_datasets(prepared, cfg)["train"]
    assert train[0]["image_t1"].shape == (1, 64, 64)
