"""``cardiac-evaluate``: score a checkpoint on a patient split it recorded and write the report.

Flags in, :func:`~cardiac_dreamer.evaluation.evaluate_checkpoint` (or, with ``--navigate``, closed-loop guidance in
the phantom: :func:`~cardiac_dreamer.guidance.navigation.navigate_checkpoint`) called, a table out. A library error
becomes one ``error: ...`` line on stderr and exit code 2, never a traceback. The flags, the settings and the
checkpoint's path are checked before torch and the model code load, so a mistake is answered in a fraction of a
second.
"""
from __future__ import annotations

import argparse
import re
import sys
from typing import List, Optional, Sequence, Tuple

from ..config import name_list
from ..errors import CardiacDreamerError, ConfigError
from ..guidance.settings import PLANNERS, EpisodeSettings, NavigationSettings
from ..io.run_dir import checkpoint_file
from ..names import SPLIT_CHOICES
from .common import CommandParser, StoreOnce, a_path, add_flag, configure_logging, interrupted_exit_code, \
    report_error, sigterm_as_ctrl_c


NAVIGATION_FLAGS = ("episodes", "max_steps", "start_range", "arrival", "follow_noise", "history", "planner", "seed")


def build_parser() -> argparse.ArgumentParser:
    parser = CommandParser(
        prog="cardiac-evaluate",
        description="Evaluate a cardiac_dreamer checkpoint on the patient split and with the normalization "
        "statistics it recorded; writes metrics.json, predictions.csv and plots.",
    )
    data = parser.add_argument_group("checkpoint and data")
    add_flag(data, "--checkpoint", required=True, type=a_path,
             help="a run's .ckpt, e.g. outputs/latest/checkpoints/best.ckpt")
    add_flag(data, "--data_dir", type=a_path, help="data directory (default: the one recorded in the checkpoint)")
    add_flag(data, "--split", default="test", choices=SPLIT_CHOICES, help="patients to evaluate (default: test)")
    add_flag(data, "--patients", type=_patient_list, help="comma-separated patient ids of the split, e.g. a,b; "
             'a name that holds a comma in double quotes: \'"a,b",c\' (default: all of them)')
    run = parser.add_argument_group("running")
    add_flag(run, "--batch_size", type=_positive_int, default=32, help="pairs per forward pass (default: 32)")
    add_flag(run, "--device", default="auto", help="auto (cuda, then mps, then cpu), cpu, cuda, cuda:1, ... "
             "(default: auto)")
    add_flag(parser.add_argument_group("output"), "--output_dir", type=a_path, help="where to write (default: "
             "evaluation_<split>_<timestamp>/ in the checkpoint's run)")
    _add_navigation_flags(parser)
    return parser


def _add_navigation_flags(parser: argparse.ArgumentParser) -> None:
    """``--navigate`` and its settings; the settings' defaults are None here so that using one without
    ``--navigate`` is caught (the library's defaults apply otherwise)."""
    group = parser.add_argument_group(
        "closed-loop guidance (--navigate)",
        "drive a simulated probe to the view in the phantom with the model's GuidanceSession and the oracle, stay "
        "and mean baselines, on the same starts and noise; writes navigation.json, episodes.csv, navigation.png, "
        "episode_strip.png into navigation_<timestamp>/ in the checkpoint's run (or --output_dir)",
    )
    group.add_argument("--navigate", action="store_true", help="run closed-loop guidance instead of evaluation")
    def setting(flag: str, **kwargs) -> None:  # given at most once: a second --history replaced the first
        add_flag(group, flag, action=StoreOnce, **kwargs)

    setting("--episodes", type=_positive_int, help="episodes per policy, dealt to the patients in turn (default: "
            f"{NavigationSettings.episodes})")
    setting("--max_steps", type=_positive_int, help="frames per episode before giving up (default: "
            f"{EpisodeSettings.max_steps})")
    setting("--start_range", type=_mm_and_degrees, help="starts uniform within this box around the view, e.g. "
            "20mm,20deg; starts outside the training poses' range are reported apart (default: that range on each "
            "axis)")
    setting("--arrival", type=_mm_and_degrees, help="the model's sessions say arrived when their estimate is within "
            "this, e.g. 2.5mm,2.5deg (imagine ranks its candidates in these units); success is still judged at 5 mm / "
            "5 deg (default: {:g}mm,{:g}deg)".format(*NavigationSettings.arrival))
    setting("--follow_noise", type=_non_negative_float, help="the sonographer's noise n: executed = suggested * (1 + "
            f"n N(0,1)) + n * 5 mm|deg * N(0,1) (default: {EpisodeSettings.follow_noise:g})")
    setting("--history", type=_history_list, help="comma-separated frames of history fused by the session, one "
            f"model policy each (default: {','.join(map(str, NavigationSettings.histories))})")
    setting("--planner", type=_planner_list, help="direct (the inverse of the estimate) and/or imagine (the world "
            f"model picks among candidate moves), comma-separated (default: {','.join(NavigationSettings.planners)})")
    setting("--seed", type=_non_negative_int, help="seed of starts, speckle and hand noise (default: "
            f"{EpisodeSettings.seed})")


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    misplaced = [flag for flag in NAVIGATION_FLAGS if getattr(args, flag) is not None]
    if misplaced and not args.navigate:
        parser.error(f"--{misplaced[0]} needs --navigate")
    configure_logging()
    with sigterm_as_ctrl_c():
        try:
            return _navigate(args) if args.navigate else _evaluate(args)
        except KeyboardInterrupt:
            print("interrupted; the results were not written, or not all of them: run it again", file=sys.stderr)
            return interrupted_exit_code()


def _evaluate(args: argparse.Namespace) -> int:
    try:
        checkpoint_file(args.checkpoint)  # a mistyped path is answered before torch and the model code load
    except CardiacDreamerError as error:
        return report_error(error)
    from ..evaluation.evaluator import evaluate_checkpoint

    try:
        report, output_dir = evaluate_checkpoint(
            args.checkpoint,
            split=args.split,
            data_dir=args.data_dir,
            patients=args.patients,
            output_dir=args.output_dir,
            batch_size=args.batch_size,
            device=args.device,
        )
    except CardiacDreamerError as error:
        return report_error(error)
    print(report.summary_table())
    print(f"results: {output_dir}")
    return 0


def _navigate(args: argparse.Namespace) -> int:
    try:
        settings = _navigation_settings(args)
        checkpoint_file(args.checkpoint)
    except CardiacDreamerError as error:
        return report_error(error)
    from ..guidance.navigation import navigate_checkpoint  # torch and the model code: once the input is checked
    from ..guidance.navigation.report import summary_table

    try:
        result, output_dir = navigate_checkpoint(
            args.checkpoint, settings, data_dir=args.data_dir, output_dir=args.output_dir, device=args.device
        )
    except CardiacDreamerError as error:
        return report_error(error)
    print(summary_table(result))
    print(f"results: {output_dir}")
    return 0


def _navigation_settings(args: argparse.Namespace) -> NavigationSettings:
    """The flags given, over the library's defaults."""
    episode = EpisodeSettings(**_given(max_steps=args.max_steps, follow_noise=args.follow_noise, seed=args.seed))
    return NavigationSettings(split=args.split, patients=tuple(args.patients) if args.patients else None,
                              episode=episode, start_range=args.start_range,
                              **_given(episodes=args.episodes, histories=args.history, planners=args.planner,
                                       arrival=args.arrival))


def _given(**values):
    """The values of the flags a user gave (a flag left out is None and keeps the library's default)."""
    return {key: value for key, value in values.items() if value is not None}


def _patient_list(value: str) -> List[str]:
    try:
        patients = name_list(value)
    except ConfigError as problem:
        raise argparse.ArgumentTypeError(str(problem)) from None
    if not patients:
        raise argparse.ArgumentTypeError("expected comma-separated patient ids")
    return patients


def _number(kind: type, lowest: float, wording: str):
    """An argparse type: a finite ``kind`` (int or float) of at least ``lowest``, else one line naming the rule."""
    def convert(value: str):
        try:
            number = _plain(kind, value)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {wording}, got {value!r}") from None
        if not lowest <= number < float("inf"):
            raise argparse.ArgumentTypeError(f"expected {wording}, got {value}")
        return number
    return convert


def _plain(kind: type, text: str):
    """``kind(text)``, refusing the digit separators Python allows: ``int("1_0")`` is 10, on a command line a typo."""
    if "_" in text:
        raise ValueError(f"digit separator in {text!r}")
    return kind(text)


_positive_int = _number(int, 1, "a positive integer")
_non_negative_int = _number(int, 0, "an integer >= 0")
_non_negative_float = _number(float, 0.0, "a finite number >= 0")


def _mm_and_degrees(value: str) -> Tuple[float, float]:
    """``20mm,20deg``, ``20,20`` or ``20`` (both) -> (mm, degrees); one value with a unit (``20deg``) is refused,
    since it would set the other unit too."""
    parts = [part.strip() for part in value.split(",")]
    found = [re.fullmatch(r"([0-9.]+)\s*(mm|deg)?", part) for part in parts]
    units = [match.group(2) for match in found if match]
    if not 1 <= len(parts) <= 2 or not all(found) or units not in ([None], [None, None], ["mm", "deg"]):
        raise argparse.ArgumentTypeError(f"expected e.g. 20mm,20deg (or 20 for both), got {value!r}")
    numbers = [_non_negative_float(match.group(1)) for match in found]
    return (numbers[0], numbers[-1])


def _history_list(value: str) -> Tuple[int, ...]:
    try:
        values = tuple(_plain(int, part) for part in value.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers >= 0, e.g. 0,4, got {value!r}") from None
    if any(number < 0 for number in values):
        raise argparse.ArgumentTypeError(f"history values must be >= 0, got {value}")
    return values


def _planner_list(value: str) -> Tuple[str, ...]:
    planners = tuple(part.strip() for part in value.split(","))
    unknown = [planner for planner in planners if planner not in PLANNERS]  # an empty one too (direct,,imagine)
    if unknown or len(set(planners)) != len(planners):
        raise argparse.ArgumentTypeError(f"planners are {', '.join(PLANNERS)}, each at most once, got {value!r}")
    return planners


if __name__ == "__main__":
    sys.exit(main())
