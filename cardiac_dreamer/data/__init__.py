"""Data: read and validate exports, split by patient, standardize labels, serve tensors."""
from .consistency import ConsistencyReport, check_label_consistency
from .dataset import TransitionsDataset
from .image_check import ImageScan, scan_images, verify_images, verify_undecoded_images
from .normalization import AxisStats, NormalizationStats
from .prepare import PreparedData, build_datasets, dataset_from_config, prepare_data
from ..names import TRANSITIONS_FILE
from .records import TransitionRecord, find_patient_folders, read_patient_records, read_records
from .splits import PatientSplit, automatic_split, kfold_splits, manual_split, read_grouping
from .transforms import IMAGE_MEAN, IMAGE_STD, PhotometricAugment, images_to_float, read_grayscale

__all__ = [
    "IMAGE_MEAN",
    "IMAGE_STD",
    "TRANSITIONS_FILE",
    "AxisStats",
    "ConsistencyReport",
    "ImageScan",
    "NormalizationStats",
    "PatientSplit",
    "PhotometricAugment",
    "PreparedData",
    "TransitionRecord",
    "TransitionsDataset",
    "automatic_split",
    "build_datasets",
    "check_label_consistency",
    "dataset_from_config",
    "find_patient_folders",
    "images_to_float",
    "kfold_splits",
    "manual_split",
    "prepare_data",
    "read_grayscale",
    "read_grouping",
    "read_patient_records",
    "read_records",
    "scan_images",
    "verify_images",
    "verify_undecoded_images",
]
