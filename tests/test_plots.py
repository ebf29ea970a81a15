"""Every plot writes a readable PNG atomically from plain data; the split check catches patient leakage."""
import math
import subprocess
import sys

import numpy as np
import pytest
from matplotlib.figure import Figure
from PIL import Image

from cardiac_dreamer import plots
from cardiac_dreamer.plots import evaluation as plot_evaluation, training as plot_training
from cardiac_dreamer.errors import OutputError
from cardiac_dreamer.names import LOSS_NAMES, VAL_MAE_NAMES, csv_columns

DPI = 40


def assert_png(path):
    with Image.open(path) as image:
        assert image.format == "PNG"
        assert image.width > 0 and image.height > 0


def poses(seed, n=20):
    return np.random.default_rng(seed).normal(size=(n, 6))


def epoch_row(epoch, value):
    keys = [
        "train_total_loss", "val_loss", "train_main_task_loss", "val_main_task_loss", "learning_rate",
        "train_latent_loss", "val_latent_loss", "train_aux_t2_action_loss", "val_aux_t2_action_loss",
        "val_mae_x_mm", "val_mae_y_mm", "val_mae_z_mm", "val_mae_roll_deg", "val_mae_pitch_deg", "val_mae_yaw_deg",
    ]
    return {"epoch": epoch, **{key: value for key in keys}}


def test_split_overlap_is_empty_for_disjoint_splits():
    assert plots.split_overlap({"train": ["a", "b"], "val": ["c"], "test": ["d"]}) == {}


def test_split_overlap_names_every_split_of_a_shared_patient():
    split = {"train": ["a", "b"], "val": ["b", "c"], "test": ["b", "a"]}
    assert plots.split_overlap(split) == {"a": ["train", "test"], "b": ["train", "val", "test"]}


def test_split_overlap_ignores_a_repeat_inside_one_split():
    assert plots.split_overlap({"train": ["a", "a"], "val": ["b"], "test": []}) == {}


def test_dataset_statistics_writes_png_with_previews_and_leak(tmp_path):
    image = np.random.default_rng(0).integers(0, 256, size=(32, 32), dtype=np.uint8)
    path = plots.plot_dataset_statistics(
        tmp_path / "dataset_statistics.png",
        {"train": ["p1", "p2"], "val": ["p3"], "test": ["p3"]},
        {"p1": 10, "p2": 12, "p3": 5, "extra": 2},
        [("p1", "train", image, image), ("p3", "val", image, 255 - image)],
        composition_summary="labels are additive: max residual 0.000 mm, 0.000 deg",
        dpi=DPI,
    )
    assert path == tmp_path / "dataset_statistics.png"
    assert_png(path)


def test_patients_named_like_math_are_drawn_as_their_names(tmp_path):
    image = np.zeros((32, 32), dtype=np.uint8)
    odd = "p$\\bad$"  # a folder name matplotlib's math parser cannot read
    path = plots.plot_dataset_statistics(tmp_path / "d.png", {"train": [odd], "val": ["$x^2$"], "test": []},
                                         {odd: 3, "$x^2$": 2}, [(odd, "train", image, image)], dpi=DPI)
    assert_png(path)


def test_dataset_statistics_works_without_previews_or_patients(tmp_path):
    path = plots.plot_dataset_statistics(tmp_path / "d.png", {"train": [], "val": [], "test": []}, {}, dpi=DPI)
    assert_png(path)


def test_training_summary_works_with_a_single_epoch(tmp_path):
    path = plots.plot_training_summary(tmp_path / "t.png", [epoch_row(0, 0.5)], {"test_mae_x_mm": 1.5}, dpi=DPI)
    assert_png(path)


@pytest.fixture
def drawn_figures(monkeypatch):
    """The figures the plots save, drawn: their tick labels are what a user reads."""
    figures, save = [], plots.save_figure

    def keep(fig, path, dpi):
        figures.append(fig)
        return save(fig, path, dpi)

    for family in (plot_training, plot_evaluation):
        monkeypatch.setattr(family, "save_figure", keep)
    return figures


def tick_labels(figure, axis: str, xlabel: str = None):
    """The tick labels on ``axis`` of the figure's panels (those whose x axis is ``xlabel``, when given)."""
    return [label.get_text() for ax in figure.axes if xlabel is None or ax.get_xlabel() == xlabel
            for minor in (False, True) for label in getattr(ax, f"get_{axis}ticklabels")(minor=minor)
            if label.get_text()]


def test_the_learning_rate_axis_reads_as_numbers_not_math_markup(tmp_path, drawn_figures):
    rows = [{**epoch_row(epoch, 1.0 / (epoch + 1)), "learning_rate": 4e-4 * 0.3 ** epoch} for epoch in range(4)]
    plots.plot_training_summary(tmp_path / "t.png", rows, {}, dpi=DPI)
    labels = tick_labels(drawn_figures[0], "y")
    assert any("e" in label for label in labels) and not any("$" in label for label in labels), labels


def test_one_epoch_is_ticked_as_whole_epochs(tmp_path, drawn_figures):
    plots.plot_training_summary(tmp_path / "t.png", [epoch_row(0, 0.5)], {}, dpi=DPI)
    labels = tick_labels(drawn_figures[0], "x", xlabel="epoch")
    assert labels and all(float(label.replace("\N{MINUS SIGN}", "-")).is_integer() for label in labels), labels


def test_every_loss_term_the_trainer_logs_is_drawn(tmp_path, drawn_figures):
    """The summary reads metrics.csv's own columns: a curve whose name drifted from the log would vanish silently."""
    rows = [{column: 1.0 / (epoch + 1) for column in csv_columns(LOSS_NAMES, VAL_MAE_NAMES)} | {"epoch": epoch}
            for epoch in range(3)]
    plots.plot_training_summary(tmp_path / "t.png", rows, {}, dpi=DPI)
    loss_panels = [ax for ax in drawn_figures[0].axes if ax.get_title().endswith(("loss", "losses"))]
    curves = [line for ax in loss_panels for line in ax.lines if not line.get_label().startswith("best val")]
    assert len(curves) == 2 * len(LOSS_NAMES)  # each term, on train and on val


def test_training_summary_skips_missing_none_and_nan_values(tmp_path):
    rows = [epoch_row(0, 1.0), {"epoch": 1, "train_total_loss": math.nan, "val_loss": None}, epoch_row(2, 0.5)]
    rows[2]["learning_rate"] = "nan"
    path = plots.plot_training_summary(tmp_path / "t.png", rows, {}, dpi=DPI)
    assert_png(path)


def test_training_summary_works_without_any_epoch(tmp_path):
    assert_png(plots.plot_training_summary(tmp_path / "t.png", [], {"note": "stopped early"}, dpi=DPI))


def test_best_val_is_the_lowest_finite_val_main_task_loss():
    rows = [{"epoch": 1, "val_main_task_loss": 0.9}, {"epoch": 2, "val_main_task_loss": math.nan},
            {"epoch": 3, "val_main_task_loss": 0.4}, {"epoch": 4, "val_main_task_loss": 0.6}]
    assert plot_training._best_val(rows) == (3.0, 0.4)


def test_training_summary_lists_the_best_loss_once():
    rows = [epoch_row(0, 0.9), epoch_row(1, 0.4)]
    lines = plot_training._summary_lines(rows, rows, {"best_val_main_task_loss": 0.4, "epochs_completed": 2})
    assert [line for line in lines if "best_val_main_task_loss" in line] == ["best_val_main_task_loss: 0.4"]
    assert "best epoch: 1" in lines and "epochs_completed: 2" in lines


def test_training_summary_names_the_last_epochs_validation_mae_final():
    """The panel lists the best epoch beside the MAEs: those are the last epoch's, and say so."""
    rows = [epoch_row(1, 0.4), epoch_row(2, 0.7)]
    lines = plot_training._summary_lines(rows, rows, {})
    assert "best epoch: 1" in lines
    assert [line for line in lines if "val_mae_x_mm" in line] == ["final val_mae_x_mm: 0.7 mm"]


def test_a_pre_training_epoch_is_never_named_the_best(tmp_path, drawn_figures):
    rows = [epoch_row(0, 0.3), epoch_row(1, 0.8), epoch_row(2, 0.5)]  # epoch 0: latent term alone, ranks nothing
    plots.plot_training_summary(tmp_path / "t.png", rows, {}, first_ranked_epoch=1, dpi=DPI)
    texts = [text.get_text() for ax in drawn_figures[0].axes for text in ax.texts]
    legends = [text.get_text() for ax in drawn_figures[0].axes if ax.get_legend()
               for text in ax.get_legend().get_texts()]
    assert "best val (epoch 2)" in legends and "best val (epoch 0)" not in legends
    assert any("best epoch: 2" in text for text in texts), texts


def bar_heights(fig):
    return [round(bar.get_height(), 6) for ax in fig.axes for bar in ax.patches]


def test_one_patients_mae_is_six_labelled_bars_without_mean_lines():
    fig = plots.per_patient_mae_figure({"p1": [1.5, 2, 3, 4, 5, 6]})
    assert bar_heights(fig) == [1.5, 2, 3, 4, 5, 6]
    assert [ax.get_ylabel() for ax in fig.axes] == ["MAE (mm)", "MAE (deg)"]
    assert not any(ax.lines for ax in fig.axes)  # no mean line equal to its only bar
    labels = [text.get_text() for ax in fig.axes for text in ax.texts]
    assert labels == ["1.5", "2", "3", "4", "5", "6"]


def test_several_patients_mae_has_a_bar_per_patient_and_a_mean_line_per_axis():
    fig = plots.per_patient_mae_figure({"p1": [1, 2, 3, 4, 5, 6], "p2": [3, 2, 1, 0, 1, 2]})
    assert len(fig.axes) == 6 and all(len(ax.patches) == 2 for ax in fig.axes)
    assert [ax.lines[0].get_ydata()[0] for ax in fig.axes] == [2, 2, 2, 2, 3, 4]


def test_metrics_are_formatted_with_their_unit():
    assert plot_training._format_metric("test_mae_x_mm", 1.23456) == "1.235 mm"
    assert plot_training._format_metric("rotation_error_deg", 2.0) == "2 deg"
    assert plot_training._format_metric("best_epoch", 12345) == "12345"


@pytest.mark.parametrize(
    "draw",
    [
        lambda path: plots.plot_predicted_vs_true(path, poses(0), poses(1), title="test set", dpi=DPI),
        lambda path: plots.plot_error_histograms(path, poses(0), poses(1), dpi=DPI),
        lambda path: plots.plot_per_patient_mae(path, {"p1": [1, 2, 3, 4, 5, 6], "p2": [2, 2, 2, 1, 1, 1]}, dpi=DPI),
    ],
    ids=["predicted_vs_true", "error_histograms", "per_patient_mae"],
)
def test_evaluation_plot_writes_png(tmp_path, draw):
    assert_png(draw(tmp_path / "eval.png"))


def test_angle_errors_across_180_degrees_are_plotted_as_metrics_json_scores_them(tmp_path, drawn_figures):
    # A yaw of 179 deg read as -179 is 2 deg off; the panels must not say 358.
    labels, predictions = np.zeros((2, 6)), np.zeros((2, 6))
    labels[:, 5], predictions[:, 5] = 179.0, -179.0
    plots.plot_predicted_vs_true(tmp_path / "scatter.png", labels, predictions, dpi=DPI)
    plots.plot_error_histograms(tmp_path / "errors.png", labels, predictions, dpi=DPI)
    scatter, histograms = (figure.axes[5].get_title() for figure in drawn_figures)
    assert scatter == "yaw: MAE 2 deg"
    assert histograms == "yaw: mean +2, std 0 deg"


def test_evaluation_plots_reject_mismatched_shapes(tmp_path):
    with pytest.raises(ValueError, match="must both be"):
        plots.plot_predicted_vs_true(tmp_path / "e.png", poses(0, n=5), poses(1, n=4), dpi=DPI)


def test_cv_summary_compares_variants_side_by_side(tmp_path):
    def folds(scale):
        return [{"mae_x_mm": scale * k, "rotation_error_deg": 2 * scale * k, "note": "n/a"} for k in (1, 2, 3)]

    path = plots.plot_cv_summary(tmp_path / "cv.png", {"dreamer": folds(1.0), "direct": folds(1.5)[:2]}, dpi=DPI)
    assert_png(path)


def test_cv_summary_works_with_one_variant_and_one_fold(tmp_path):
    assert_png(plots.plot_cv_summary(tmp_path / "cv.png", {"dreamer": [{"mae_x_mm": 1.0}]}, dpi=DPI))


def test_plot_creates_missing_parent_folders_and_leaves_no_temp_file(tmp_path):
    path = plots.plot_error_histograms(tmp_path / "a" / "b" / "hist.png", poses(0), poses(1), dpi=DPI)
    assert sorted(p.name for p in path.parent.iterdir()) == ["hist.png"]


def test_failed_render_keeps_the_previous_plot_and_no_temp_file(tmp_path, monkeypatch):
    path = plots.plot_error_histograms(tmp_path / "hist.png", poses(0), poses(1), dpi=DPI)
    before = path.read_bytes()

    def broken_savefig(self, *args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(Figure, "savefig", broken_savefig)
    with pytest.raises(OutputError, match="hist.png: cannot write \\(disk full\\)"):
        plots.plot_error_histograms(path, poses(2), poses(3), dpi=DPI)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["hist.png"]


def test_importing_plots_leaves_pyplot_unloaded():
    code = "import sys, cardiac_dreamer.plots; print('matplotlib.pyplot' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "False"
