"""The disk image cache: identical pixels to decoding, invalidated by a changed file, never in the data directory,
atomic, shared by concurrent builders and by loader workers without a copy."""
import logging
import multiprocessing
import os
import pickle

import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader

from cardiac_dreamer.data import TransitionsDataset, read_records
from cardiac_dreamer.data.packed_cache import default_cache_dir, open_pack, pack_name
from cardiac_dreamer.errors import DataError, OutputError


def disk_dataset(data_dir, cache_dir, **kwargs):
    """Over any memory budget, so the images go into packs under ``cache_dir``."""
    return TransitionsDataset(read_records(data_dir), image_size=32, cache_budget_mb=0, disk_cache_dir=cache_dir,
                              normalize_images=False, **kwargs)


def decoded_dataset(data_dir):
    return TransitionsDataset(read_records(data_dir), image_size=32, cache_images=False, normalize_images=False)


def same_images(a, b):
    return len(a) == len(b) and all(torch.equal(a[i][key], b[i][key])
                                    for i in range(len(a)) for key in ("image_t1", "image_t2"))


def listing(directory):
    return sorted((str(p.relative_to(directory)), p.stat().st_size, p.stat().st_mtime_ns) for p in directory.rglob("*"))


def test_packs_serve_exactly_the_decoded_pixels(real_export, tmp_path):
    dataset = disk_dataset(real_export, tmp_path / "cache")
    assert dataset.image_store == "disk" and dataset.cache_mb == 0.0
    assert same_images(dataset, decoded_dataset(real_export))


def test_a_second_dataset_reuses_the_packs_without_decoding(real_export, tmp_path, monkeypatch):
    disk_dataset(real_export, tmp_path / "cache")
    monkeypatch.setattr(TransitionsDataset, "_decode", lambda self, slot: pytest.fail("decoded again"))
    assert disk_dataset(real_export, tmp_path / "cache").image_store == "disk"


def test_one_pack_per_patient_folder(real_export, tmp_path):
    disk_dataset(real_export, tmp_path / "cache")
    assert len(list((tmp_path / "cache").glob("*.u8"))) == 3


def test_a_rewritten_image_is_decoded_again_not_served_stale(real_export, tmp_path):
    disk_dataset(real_export, tmp_path / "cache")
    record = read_records(real_export)[1]
    Image.fromarray(np.full((64, 64, 3), 7, dtype=np.uint8)).save(record.image_t2)
    stamp = record.image_t2.stat()
    os.utime(record.image_t2, ns=(stamp.st_atime_ns, stamp.st_mtime_ns + 10**9))
    dataset = disk_dataset(real_export, tmp_path / "cache")
    assert torch.equal(dataset[1]["image_t2"], torch.full((1, 32, 32), 7, dtype=torch.uint8))
    assert same_images(dataset, decoded_dataset(real_export))


def test_an_image_swapped_for_one_of_the_same_size_and_time_is_decoded_again(real_export, tmp_path):
    # cp -p, rsync -a and tar restore a file's modification time: only the change time tells the files apart.
    disk_dataset(real_export, tmp_path / "cache")
    record = read_records(real_export)[1]
    original = record.image_t2.stat()
    replacement = tmp_path / "replacement.png"
    Image.fromarray(np.full((64, 64, 3), 7, dtype=np.uint8)).save(replacement)
    padded = replacement.read_bytes().ljust(original.st_size, b"\x00")  # PNG readers ignore bytes after IEND
    assert len(padded) == original.st_size
    replacement.write_bytes(padded)
    os.replace(replacement, record.image_t2)
    os.utime(record.image_t2, ns=(original.st_atime_ns, original.st_mtime_ns))
    dataset = disk_dataset(real_export, tmp_path / "cache")
    assert torch.equal(dataset[1]["image_t2"], torch.full((1, 32, 32), 7, dtype=torch.uint8))


def test_a_cache_deleted_while_in_use_is_decoded_around(real_export, tmp_path, caplog):
    dataset = disk_dataset(real_export, tmp_path / "cache")
    for pack in (tmp_path / "cache").glob("*.u8"):
        pack.unlink()
    with caplog.at_level(logging.WARNING):
        assert same_images(dataset, decoded_dataset(real_export))
    assert caplog.text.count("decoding the images instead") == 1


def test_nothing_is_written_into_the_data_directory(real_export, tmp_path):
    before = listing(real_export)
    disk_dataset(real_export, tmp_path / "cache")[0]
    assert listing(real_export) == before


def test_a_cache_directory_inside_the_data_directory_is_refused(real_export):
    with pytest.raises(OutputError, match="inside the data directory"):
        disk_dataset(real_export, real_export / "cache")


def test_a_cache_beside_labels_that_a_transitions_file_links_to_is_refused(real_export, tmp_path):
    labels = tmp_path / "labels"
    labels.mkdir()
    transitions = next(real_export.glob("*/transitions_dataset.json"))
    os.replace(transitions, labels / "patient.json")
    transitions.symlink_to(labels / "patient.json")
    with pytest.raises(OutputError, match="inside the data directory"):
        disk_dataset(real_export, labels / "cache")
    assert not (labels / "cache").exists()


def test_the_default_cache_directory_follows_the_environment(tmp_path, monkeypatch):
    monkeypatch.delenv("CARDIAC_DREAMER_CACHE", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert default_cache_dir() == tmp_path / "xdg" / "cardiac_dreamer"
    monkeypatch.setenv("CARDIAC_DREAMER_CACHE", str(tmp_path / "mine"))
    assert default_cache_dir() == tmp_path / "mine"


def test_an_unwritable_cache_directory_falls_back_to_decoding(real_export, tmp_path, caplog):
    blocker = tmp_path / "a_file"
    blocker.write_text("not a directory")
    with caplog.at_level(logging.WARNING):
        dataset = disk_dataset(real_export, blocker / "cache")
    assert dataset.image_store == "decode" and "decoding images on demand" in caplog.text
    assert same_images(dataset, decoded_dataset(real_export))


def test_a_build_cut_short_leaves_no_pack_and_the_next_build_completes(tmp_path):
    paths = []
    for number in range(3):
        paths.append(tmp_path / f"{number}.png")
        Image.fromarray(np.full((8, 8), number, dtype=np.uint8)).save(paths[-1])
    images = [np.full((8, 8), number, dtype=np.uint8) for number in range(3)]

    def crashing():
        yield images[0]
        raise RuntimeError("killed mid-build")

    cache = tmp_path / "cache"
    with pytest.raises(RuntimeError):
        open_pack(paths, 8, crashing, cache)
    assert not (cache / pack_name(paths, 8)).exists() and not list(cache.glob("*.tmp"))
    pack = open_pack(paths, 8, lambda: iter(images), cache)
    assert [int(pack[row].max()) for row in range(3)] == [0, 1, 2]


def test_a_pack_of_the_wrong_length_is_rebuilt(tmp_path):
    path = tmp_path / "0.png"
    Image.fromarray(np.full((8, 8), 5, dtype=np.uint8)).save(path)
    cache = tmp_path / "cache"
    cache.mkdir()
    (cache / pack_name([path], 8)).write_bytes(b"CDPACK\x00\x00 truncated")
    assert int(open_pack([path], 8, lambda: iter([np.full((8, 8), 5, np.uint8)]), cache)[0].max()) == 5


def test_a_missing_image_names_its_entry(real_export, tmp_path):
    records = read_records(real_export)
    records[2].image_t1.unlink()
    with pytest.raises(DataError, match="entry 2: .*image not found"):
        disk_dataset(real_export, tmp_path / "cache")


def _build_in_another_process(data_dir, cache_dir, queue):
    dataset = disk_dataset(data_dir, cache_dir)
    queue.put([dataset[i]["image_t1"].sum().item() for i in range(len(dataset))])


def test_two_processes_building_at_once_both_get_the_same_complete_packs(real_export, tmp_path):
    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    processes = [context.Process(target=_build_in_another_process, args=(real_export, tmp_path / "cache", queue))
                 for _ in range(2)]
    for process in processes:
        process.start()
    results = [queue.get(timeout=120) for _ in processes]
    for process in processes:
        process.join(timeout=60)
    assert [process.exitcode for process in processes] == [0, 0]
    expected = [item["image_t1"].sum().item() for item in decoded_dataset(real_export)]
    assert results == [expected, expected]
    assert len(list((tmp_path / "cache").glob("*.u8"))) == 3 and not list((tmp_path / "cache").glob(".*.tmp"))


def test_workers_receive_the_pack_file_name_not_the_images(real_export, tmp_path):
    dataset = disk_dataset(real_export, tmp_path / "cache")
    in_memory = TransitionsDataset(read_records(real_export), image_size=32, normalize_images=False)
    pixels = dataset.num_images * 32 * 32
    assert len(pickle.dumps(dataset)) < len(pickle.dumps(in_memory)) - pixels / 2
    batches = DataLoader(dataset, batch_size=4, num_workers=2, multiprocessing_context="spawn")
    loaded = torch.cat([batch["image_t1"] for batch in batches])
    assert torch.equal(loaded, torch.stack([item["image_t1"] for item in decoded_dataset(real_export)]))
