"""Every image checked before anything is written: what a lazily decoding dataset would only meet mid-epoch."""
import pytest
from PIL import Image

from cardiac_dreamer.data import TransitionsDataset, read_records
from cardiac_dreamer.data.image_check import scan_images, verify_images
from cardiac_dreamer.errors import DataError
from test_hostile_inputs import png_claiming

PATIENT, OTHER = "data_0513_01", "data_0513_02"  # the real_export fixture: 3 patients, 4 pairs, 24 RGB 64 px files


def image_of(data_dir, folder, sub, frame):
    return data_dir / folder / sub / f"frames_{folder[5:]}_{frame:04d}.png"


def truncate(path):
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def test_a_valid_export_is_counted_once_per_distinct_file(real_export):
    scan = verify_images(read_records(real_export), 64)
    assert scan.num_images == 24 and scan.problems == []
    assert scan.sizes == {(64, 64): 24} and scan.modes == {"RGB": 24}


@pytest.mark.parametrize("workers", [1, 2])
def test_a_truncated_image_the_lazy_dataset_would_meet_mid_epoch_is_found_up_front(real_export, workers):
    records = read_records(real_export)
    broken = image_of(real_export, OTHER, "ft2", 2)
    truncate(broken)
    TransitionsDataset(records, image_size=64, cache_budget_mb=0, disk_cache="off")  # lazy: no error
    with pytest.raises(DataError) as error:
        verify_images(records, 64, workers=workers)
    message = str(error.value)
    assert message.startswith(f"{real_export / OTHER / 'transitions_dataset.json'}: entry 2: {broken}: ")
    assert "image file is truncated" in message and "\n" not in message


def test_pixel_data_that_pil_verify_accepts_but_cannot_decode_is_found(real_export):
    broken = image_of(real_export, PATIENT, "ft1", 1)
    broken.write_bytes(png_claiming(64, 64))  # intact chunks and CRCs, too few pixels in IDAT
    with Image.open(broken) as image:
        image.verify()  # what a header-and-CRC check would pass
    with pytest.raises(DataError, match=f"entry 1: {broken}: cannot decode image"):
        verify_images(read_records(real_export), 64)


def test_the_first_problem_in_record_order_is_reported(real_export):
    later, first = image_of(real_export, "data_0513_03", "ft1", 0), image_of(real_export, PATIENT, "ft2", 3)
    later.write_bytes(b"not an image")
    first.write_bytes(b"not an image either")
    with pytest.raises(DataError, match=f"{PATIENT}/transitions_dataset.json: entry 3: {first}"):
        verify_images(read_records(real_export), 64, workers=2)


def test_scan_collects_every_problem_and_counts_the_usable_files(real_export):
    image_of(real_export, PATIENT, "ft2", 0).write_bytes(b"not an image")
    Image.new("L", (80, 60), 100).save(image_of(real_export, OTHER, "ft1", 1))
    truncate(image_of(real_export, "data_0513_03", "ft1", 3))
    scan = scan_images(read_records(real_export), 64)
    assert [problem.split(": ")[1] for problem in scan.problems] == ["entry 0", "entry 3"]
    assert "cannot decode image" in scan.problems[0] and "truncated" in scan.problems[1]
    assert scan.sizes == {(64, 64): 21, (80, 60): 1} and scan.modes == {"RGB": 21, "L": 1}
    assert scan.num_images == 24


def test_images_are_checked_under_the_rules_training_decodes_with(real_export):
    Image.new("LA", (64, 64), (120, 0)).save(image_of(real_export, OTHER, "ft1", 0))  # fully transparent
    with pytest.raises(DataError, match="entry 0: .*: cannot use image \\(LA, transparent pixels"):
        verify_images(read_records(real_export), 64)
