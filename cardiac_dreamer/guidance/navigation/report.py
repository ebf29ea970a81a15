"""The navigation report: ``navigation.json``, ``episodes.csv``, ``navigation.png``, ``episode_strip.png`` and the
terminal table.

matplotlib is imported inside the plotting functions only (the object API, as :mod:`cardiac_dreamer.plots`), so
the runtime (:mod:`cardiac_dreamer.guidance.session`) never loads it. Every file is written atomically.
"""
from __future__ import annotations

import csv
import logging
import math
from pathlib import Path
from typing import Any, Dict, List, Optional

import numpy as np

from ...evaluation.metrics import rotation_errors, translation_errors
from ...io.fileio import atomic_open, write_json
from ...geometry import AXIS_NAMES, AXIS_UNITS
from ..session import within
from ..settings import ARRIVAL_DEG, ARRIVAL_MM, box_text
from .result import START_GROUPS, NavigationResult, settings_record
from .scoring import DEFINITIONS
from .simulator import SLIP, Episode

log = logging.getLogger(__name__)

FILES = ("navigation.json", "episodes.csv", "navigation.png", "episode_strip.png")
MAX_STRIP_FRAMES = 10
DPI = 100
SIMULATION = {
    "patients": "phantom hearts (cardiac_dreamer.phantom) as each patient's phantom.json describes them: v4 hearts "
    "beat and breathe (each frame at a random cardiac and breathing phase), v3 hearts are static; fresh speckle per "
    "frame; no probe pressure",
    "frames": "rendered at the image size the patient was written at (what training saw) and preprocessed by the "
    "model exactly as in training; fresh patients at the checkpoint's image size",
    "start": "a pose in the start box (settings.episode.start_low..start_high; mm for x, y, z, degrees for the "
    f"angles) outside the {ARRIVAL_MM:g} mm / {ARRIVAL_DEG:g} degree view: by default the training poses' range on "
    "each axis (training_range), the pose a frame of a fresh phantom sweep where the patients were written as sweeps "
    "(settings.episode.starts 'sweep'), else uniform ('box'); with --start_range uniform in a box centred on the "
    "view, whose starts outside the training range are summarized apart (starts)",
    "episode": "render the true pose, update the policy, stop when it says arrived or after max_steps frames; "
    "otherwise the sonographer executes the suggested move and the true pose moves by it (the model's composition)",
    "sonographer": "executed = suggested * (1 + n N(0,1)) + n * slip * N(0,1) per component, n = follow_noise, "
    f"slip = {SLIP[0]:g} mm / {SLIP[3]:g} degrees; a requested zero move is not made",
    "common_random_numbers": "start poses, speckle and hand noise are seeded by (seed, episode, step): every policy "
    "meets the same starts and the same noise",
    "arrival": f"a policy says arrived when its estimate is within {ARRIVAL_MM:g} mm / {ARRIVAL_DEG:g} degrees on "
    "every component (the model's sessions: within settings.arrival, the same by default); success is always "
    "judged on the true pose at these limits",
}


def write_report(result: NavigationResult, output_dir: Path) -> List[Path]:
    """Write the four files into ``output_dir``; the written paths."""
    output_dir = Path(output_dir)
    written = [
        write_json(output_dir / FILES[0], navigation_record(result)),
        write_episodes_csv(result.episodes, output_dir / FILES[1]),
        plot_navigation(result, output_dir / FILES[2]),
        plot_episode_strip(_strip_episode(result), output_dir / FILES[3]),
    ]
    log.info("navigation results written to %s", output_dir)
    return written


def navigation_record(result: NavigationResult) -> Dict[str, Any]:
    """The content of ``navigation.json``."""
    return {
        **result.metadata,
        "settings": settings_record(result.settings),
        "patients": [{"name": patient.name, "source": patient.source} for patient in result.patients],
        "simulation": SIMULATION,
        "policies": {name: {"description": description, **result.summary[name]}
                     for name, description in result.policies.items()},
        "paired": result.paired,
        "definitions": DEFINITIONS,
    }


def write_episodes_csv(episodes: List[Episode], path: Path) -> Path:
    """One row per pose visited: the true pose, the guidance there, the move made, errors; empty cells where a
    value does not exist (no guidance at the last pose of a timed-out episode, no estimate for ``stay``)."""
    axes = [f"{name}_{unit}" for name, unit in zip(AXIS_NAMES, AXIS_UNITS)]
    header = ["policy", "patient", "episode", "step",
              *(f"{kind}_{axis}" for kind in ("true", "estimate", "suggested", "executed") for axis in axes),
              "translation_error_mm", "rotation_error_deg", "arrived", "frames_fused", "spread_mm", "spread_deg"]
    with atomic_open(path, "w", newline="") as stream:
        writer = csv.writer(stream, lineterminator="\n")
        writer.writerow(header)
        for episode in episodes:
            poses = np.array([step.true_pose for step in episode.steps])  # [steps, 6]
            view = np.zeros_like(poses)
            errors_mm, errors_deg = translation_errors(view, poses), rotation_errors(view, poses)
            for number, step in enumerate(episode.steps):
                guidance = step.guidance
                vectors = [step.true_pose, guidance.pose if guidance else None, guidance.move if guidance else None,
                           step.executed]
                writer.writerow([
                    episode.policy, episode.patient, episode.number, number,
                    *(_cell(value) for vector in vectors for value in (vector if vector is not None else [None] * 6)),
                    _cell(errors_mm[number]), _cell(errors_deg[number]),
                    "" if guidance is None else int(guidance.arrived),
                    "" if guidance is None else guidance.frames_fused,
                    _cell(guidance.spread_mm if guidance else None), _cell(guidance.spread_deg if guidance else None),
                ])
    return path


def plot_navigation(result: NavigationResult, path: Path) -> Path:
    """Translation and rotation error vs step of every episode, one column per policy, and success rate vs
    threshold for every policy."""
    from matplotlib.ticker import MaxNLocator

    from ...plots import figure, save_figure

    names = list(result.policies)
    fig = figure(3.2 * len(names), 9.5, "closed-loop guidance: true error of every episode, step by step")
    traces, curve = fig.subfigures(2, 1, height_ratios=[2, 1.2])
    axes = traces.subplots(2, len(names), sharey="row", squeeze=False)
    for column, name in enumerate(names):
        for row, (unit, limit) in enumerate((("mm", ARRIVAL_MM), ("deg", ARRIVAL_DEG))):
            ax = axes[row, column]
            longest = 1
            for episode in result.of_policy(name):
                poses = np.array([step.true_pose for step in episode.steps])
                view = np.zeros_like(poses)
                errors = translation_errors(view, poses) if unit == "mm" else rotation_errors(view, poses)
                ax.plot(np.arange(len(errors)), errors, color="tab:blue", alpha=0.35, linewidth=0.8, marker="o",
                        markersize=2)  # markers: an episode that ends at once is one point
                longest = max(longest, len(errors) - 1)
            ax.axhline(limit, color="tab:red", linestyle="--", linewidth=0.8)
            ax.set_xlim(-0.3, longest + 0.3)
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
            ax.set_xlabel("step")
            if row == 0:
                ax.set_title(name)
            if column == 0:
                ax.set_ylabel("translation error (mm)" if unit == "mm" else "rotation error (deg)")
    ax = curve.subplots()
    for name in names:
        success = result.summary[name]["overall"]["success_curve"]
        ax.plot(success["threshold"], 100 * np.array(success["success"]), label=name,
                linestyle="-" if name.startswith("model_") else "--")
    ax.axvline(ARRIVAL_MM, color="gray", linestyle=":", linewidth=0.8)
    ax.set_xlabel("threshold t (every translation within t mm and every angle within t deg)")
    ax.set_ylabel("success (% of episodes)")
    ax.set_ylim(-2, 102)
    ax.legend(fontsize="small", ncol=min(len(names), 6))
    return save_figure(fig, path, DPI)


def plot_episode_strip(episode: Episode, path: Path) -> Path:
    """The frames of one episode side by side, each with its true error and the suggested move written on it and
    the suggested in-plane translation drawn as an arrow (x to the right, z down)."""
    from ...plots import figure, save_figure

    shown = list(zip(episode.frames, episode.steps))[:MAX_STRIP_FRAMES]
    fig = figure(max(2.3 * len(shown), 7.0), 4.6)
    fig.suptitle(f"{episode.policy}, {episode.patient}, episode {episode.number}: the frames the session saw and what "
                 "it said\n(arrow: the suggested in-plane move, x right, z down)", fontsize=9)
    axes = np.atleast_1d(fig.subplots(1, max(len(shown), 1)))
    for ax, (frame, step) in zip(axes, shown):
        size = frame.shape[0]
        ax.imshow(frame, cmap="gray", vmin=0, vmax=255)
        ax.set_xticks([])
        ax.set_yticks([])
        error = step.true_pose
        ax.set_title(f"true {np.linalg.norm(error[:3]):.1f} mm, "
                     f"{rotation_errors(np.zeros((1, 6)), error[None])[0]:.1f} deg", fontsize=8)
        guidance = step.guidance
        if guidance.arrived:
            truly = within(error, ARRIVAL_MM, ARRIVAL_DEG)
            ax.set_xlabel("arrived" if truly else "said arrived: it is not", fontsize=8,
                          color="darkgreen" if truly else "tab:red")
            continue
        move = guidance.move
        ax.set_xlabel(" ".join(f"{axis}{value:+.1f}" for axis, value in zip("xyz", move[:3])) + " mm\n" +
                      " ".join(f"{axis}{value:+.1f}" for axis, value in zip("rpy", move[3:])) + " deg", fontsize=7)
        scale = size / 40.0  # pixels per mm of the arrow: 20 mm is half the frame
        ax.annotate("", xy=(size / 2 + move[0] * scale, size / 4 + move[2] * scale), xytext=(size / 2, size / 4),
                    arrowprops={"arrowstyle": "->", "color": "yellow", "linewidth": 1.5})
    return save_figure(fig, path, DPI)


def summary_table(result: NavigationResult) -> str:
    """Per policy: success rates, final errors, steps, path and false arrivals, with 95 % intervals, one block per
    kind of start when some lay outside the training range; then the paired differences (each model policy against
    ``mean``, then the model policies against each other)."""
    patients = ", ".join(patient.name for patient in result.patients)
    settings = result.settings
    lines = [
        f"navigation: {settings.episodes} episodes per policy on {patients} (from "
        f"{result.metadata['patients_from']}); starts ({settings.episode.starts}) in "
        f"{box_text(settings.episode.start_low, settings.episode.start_high)}, at most "
        f"{settings.episode.max_steps} frames, follow noise {settings.episode.follow_noise:g}",
    ]
    starts = result.summary[next(iter(result.policies))]["starts"]
    for group in [None] if list(starts) == [START_GROUPS[0]] else list(starts):
        if group is not None:
            lines.append(f"starts {group.replace('_', ' ')} ({starts[group]['episodes']} episodes per policy):")
        lines.append(f"{'policy':18}{'success 5/5':>16}{'success 10/10':>16} {'final mm':>19} {'final deg':>19}"
                     f"{'moves to succ.':>16}{'path mm':>9}{'path deg':>9}{'false arrival':>16}")
        for name in result.policies:
            scores = result.summary[name]["overall"] if group is None else result.summary[name]["starts"][group]
            lines.append(
                f"{name:18}{_rate(scores['success_5']):>16}{_rate(scores['success_10']):>16}"
                f" {_mean(scores['final_translation_error_mm']):>19} {_mean(scores['final_rotation_error_deg']):>19}"
                f"{_number(scores['steps_to_success']['value']):>16}{_number(scores['path_length_mm']['value']):>9}"
                f"{_number(scores['path_length_deg']['value']):>9}{_rate(scores['false_arrival']):>16}"
            )
    lines.append("rates: % of episodes [95 %: patients then episodes resampled, with Wilson]; means [95 % same "
                 "bootstrap]; success: every component of the true final pose within 5 mm / 5 deg (10 / 10); false "
                 "arrival: said arrived, was not (of those that said so)")
    if result.paired:
        width = max(len(pair) for pair in result.paired) + 2
        lines.append("paired on the same episodes, A - B:")
        lines.append(f"{'':{width}}{'success 5/5':>20}{'false arrivals':>20}{'final mm':>24}")
        for pair, differences in result.paired.items():
            lines.append(f"{pair:{width}}{_difference(differences['success_5'], 100, 0):>20}"
                         f"{_difference(differences['false_arrival_of_episodes'], 100, 0):>20}"
                         f"{_difference(differences['final_translation_error_mm'], 1, 1):>24}")
        lines.append("paired: differences in points of % of all episodes (false arrivals: ended saying arrived, "
                     "were not) and in mm, [95 % hierarchical bootstrap]; an interval excluding 0 is a difference")
    return "\n".join(lines)


def _strip_episode(result: NavigationResult) -> Episode:
    """The strip's episode: the first model policy's episode with kept frames."""
    return next(episode for episode in result.of_policy(result.model_policies[0]) if episode.frames)


def _rate(entry: Dict[str, Any]) -> str:
    if entry["value"] is None:
        return "n/a"
    low, high = entry["interval"]
    return f"{100 * entry['value']:.0f}% [{100 * low:.0f}-{100 * high:.0f}]"


def _difference(entry: Dict[str, Any], scale: float, decimals: int) -> str:
    """A signed difference and its interval, e.g. ``+12 [+3, +21]``."""
    if entry["value"] is None:
        return "n/a"
    low, high = (scale * bound for bound in entry["interval"])
    return f"{scale * entry['value']:+.{decimals}f} [{low:+.{decimals}f}, {high:+.{decimals}f}]"


def _mean(entry: Dict[str, Any]) -> str:
    if entry["value"] is None:
        return "n/a"
    low, high = entry["interval"]
    return f"{entry['value']:.1f} [{low:.1f}-{high:.1f}]"


def _number(value: Optional[float]) -> str:
    return "n/a" if value is None else f"{value:.1f}"


def _cell(value: Optional[float]) -> str:
    """A CSV cell: 4 decimals, empty for a missing or non-finite value."""
    return "" if value is None or not math.isfinite(value) else f"{value:.4f}"
