"""How much of a model's reading of each axis follows the training sweeps' coupling between the axes?

    python benchmarks/coupling_check.py RUN/checkpoints/averaged.ckpt RUN/test_evaluation/predictions.csv

Within a sweep the axes move together (roll falls while yaw rises as the probe closes in on the view), so a model
can learn an axis from the image's cues for the others. For each axis this fits, on the training patients' labels,
a linear map from the other five true axes to that axis (the coupling), and prints on the evaluated pairs the MAE of
the coupling alone (what knowing the other axes exactly gives), of the model and of the pixel ridge, and each one's
prediction regressed on the true value and the coupling's value together: ``true`` near 1 and ``coupling`` near 0
is a model that reads the axis itself; the reverse, one that reads it through the others and errs wherever this
patient's sweep couples them differently.
"""
from __future__ import annotations

import argparse
import csv
import sys
from pathlib import Path

import numpy as np

from cardiac_dreamer.cli.common import run_script
from cardiac_dreamer.data.records import read_records
from cardiac_dreamer.evaluation import load_run
from cardiac_dreamer.evaluation.baselines import PixelRidge
from cardiac_dreamer.geometry import AXIS_NAMES, AXIS_UNITS


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("checkpoint", type=Path, help="a checkpoint of a run (or its run directory)")
    parser.add_argument("predictions", type=Path, help="predictions.csv of cardiac-evaluate on that checkpoint")
    args = parser.parse_args()
    run = load_run(args.checkpoint)
    records = read_records(run.checkpoint.data_dir, grouping=run.checkpoint.grouping,
                           max_pairs_per_patient=run.config.data.max_pairs_per_patient)  # as the run read them
    training = [record for record in records if record.patient_id in run.split.train]
    by_entry = {(record.folder, record.index): record for record in records}
    with open(args.predictions, newline="") as stream:
        rows = list(csv.DictReader(stream))
    evaluated = [by_entry[(row["folder"], int(row["entry_index"]))] for row in rows]
    columns = [f"{axis}_{unit}" for axis, unit in zip(AXIS_NAMES, AXIS_UNITS)]
    labels = np.array([[float(row[f"label_{column}"]) for column in columns] for row in rows])
    model = np.array([[float(row[f"guidance_{column}"]) for column in columns] for row in rows])
    ridge = PixelRidge(training, run.config.data.image_size).predict(evaluated)
    trained = np.array([record.at1 for record in training])
    print(f"{len(rows)} evaluated pairs; per axis: MAE of the coupling alone, of the model, of the pixel ridge; "
          "each prediction = a * true + b * coupling + c, fitted on these pairs: (a, b)")
    for axis, column in enumerate(columns):
        others = [index for index in range(6) if index != axis]
        weights = np.linalg.lstsq(np.c_[np.ones(len(trained)), trained[:, others]], trained[:, axis], rcond=None)[0]
        coupled = np.c_[np.ones(len(labels)), labels[:, others]] @ weights
        basis = np.c_[labels[:, axis], coupled, np.ones(len(labels))]

        def summary(predicted):
            share = np.linalg.lstsq(basis, predicted, rcond=None)[0]
            return f"{np.abs(predicted - labels[:, axis]).mean():5.2f} (true {share[0]:+.2f}, coupling {share[1]:+.2f})"

        print(f"  {column:10s} coupling {np.abs(coupled - labels[:, axis]).mean():5.2f}  model "
              f"{summary(model[:, axis])}  ridge {summary(ridge[:, axis])}")

if __name__ == "__main__":
    sys.exit(run_script(main))
