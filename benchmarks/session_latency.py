"""Per-update latency of a GuidanceSession on this machine: one JSON line per (preset, planner).

    OMP_NUM_THREADS=2 python benchmarks/session_latency.py --presets production,debug --planners direct,imagine
    python benchmarks/session_latency.py --presets production --planners imagine --set model.token_type=channel
    python benchmarks/session_latency.py --presets production --precision bf16   # where the CPU has native bf16

An update is what a deployment pays per frame: preprocessing (gray conversion, resize), one backbone pass over the
frame, the guidance head (``direct``) or the head and the dreamer over the 5 candidate moves from the same features
(``imagine``), fusion and the suggested move. Weights are random (latency does not depend on them); frames are
phantom renders made beforehand, so rendering is not timed. The moves between frames are not the ones the session
suggests, so its looks are carried forward and, after the first ``history`` updates (the warm-up), every update
fuses ``history + 1`` looks and plans. Each line records the 1-minute load average: on a shared machine, figures
measured under load are not the machine's.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time

import numpy as np
import torch

from cardiac_dreamer.cli.common import run_script
from cardiac_dreamer.config import apply_overrides, load_config, parse_override
from cardiac_dreamer.evaluation import Predictor
from cardiac_dreamer.models import build_model
from cardiac_dreamer.phantom import PhantomPatient
from cardiac_dreamer.guidance.session import GuidanceSession
from cardiac_dreamer.guidance.settings import PLANNERS, SessionSettings


def measure(preset: str, planner: str, history: int, updates: int, warmup: int, overrides: dict,
            precision: str) -> dict:
    config = apply_overrides(load_config(preset), overrides)
    torch.manual_seed(0)
    predictor = Predictor(build_model(config), "cpu", precision=precision)
    session = GuidanceSession(predictor, SessionSettings(history, planner=planner))
    patient = PhantomPatient(1, image_size=config.data.image_size)
    rng = np.random.default_rng(0)
    poses = rng.uniform(-15, 15, (updates + warmup, 6))
    frames = [patient.render(pose, rng=rng) for pose in poses]  # uint8 [S, S] each
    seconds = []
    for number, frame in enumerate(frames):
        move = None if number == 0 else poses[number] - poses[number - 1]
        started = time.perf_counter()
        session.update(frame, executed_move=move)
        if number >= warmup:
            seconds.append(time.perf_counter() - started)
    return {
        "preset": preset, "overrides": overrides, "token_type": config.model.token_type,
        "image_size": config.data.image_size, "d_model": config.model.d_model,
        "num_layers": config.model.num_layers, "precision": predictor.precision.name, "planner": planner,
        "history": history, "updates": updates,
        "update_median_ms": round(1000 * statistics.median(seconds), 2),
        "update_p90_ms": round(1000 * float(np.percentile(seconds, 90)), 2),
        "threads": torch.get_num_threads(), "load_average_1min": round(os.getloadavg()[0], 2),
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="benchmarks/session_latency.py", description=__doc__.split("\n")[0])
    parser.add_argument("--presets", default="production,debug", help="config presets, comma-separated")
    parser.add_argument("--planners", default="direct,imagine", help=f"among {', '.join(PLANNERS)}")
    parser.add_argument("--history", type=int, default=4, help="frames fused besides the current one")
    parser.add_argument("--updates", type=int, default=20, help="measured updates (after warm-up)")
    parser.add_argument("--warmup", type=int, default=5, help="updates run first and not measured (more than "
                        "--history: the first ones hold still and plan nothing)")
    parser.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE",
                        help="change a preset's setting (e.g. model.token_type=channel); repeatable")
    parser.add_argument("--precision", default="32", help="the Predictor's: 32, or bf16 (fp32 where the CPU lacks "
                        "native bf16; the line records what ran)")
    args = parser.parse_args(argv)
    overrides = {key: parse_override(key, value) for key, _, value in (item.partition("=") for item in args.set)}
    for preset in args.presets.split(","):
        for planner in args.planners.split(","):
            print(json.dumps(measure(preset, planner, args.history, args.updates, args.warmup, overrides,
                                     args.precision)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(run_script(main))
