"""A procedural echocardiography phantom, written in exactly the real export format.

Why: demos, tests and benchmarks need data whose images carry the probe pose, without patient data; a closed-loop
simulator needs a heart it can image at any pose. The code lives in :mod:`cardiac_dreamer.phantom` (anatomy ->
rendering -> patient -> trajectories -> writer); this module is its public face and command line.

What is simulated. Each patient is a static 3-D heart in a voxel volume (2 mm): four chambers (blood cavities in
myocardial walls), mitral and tricuspid valves, papillary muscles, the left ventricular outflow tract (anterior:
the five-chamber view) and the coronary sinus (posterior), pericardium, epicardial fat, the chest wall above the
apex, and lungs just outside the target sector, with a static tissue texture. A frame is the volume's slice at the
probe pose, seen through a 90-degree, 160 mm sector with depth attenuation, fresh per-frame speckle and a display
gamma. Patients differ only a little (a few % of size, ~1 mm and ~2 degrees of jitter, a target view aimed ~1 mm /
~1 degree differently), so the pose -> image mapping learnt on some patients applies to others.

What is not simulated: cardiac motion, breathing, Doppler, shadowing and reverberation, beam width, probe pressure.

The pose ``at = [x, y, z, roll, pitch, yaw]`` (mm, degrees) is the probe relative to the target view (x lateral,
y elevation, z depth); labels are additive, ``at2 == at1 + action_change``. How each axis shows in the image:

* x: the whole section shifts sideways; the epicardial fat near the probe (left) moves with it while pitch barely
  moves it, which tells x from pitch.
* z: the whole section shifts in depth (the atria leave or enter the bottom of the sector).
* pitch: the section rotates about the top of the sector.
* y: the plane cuts the heart elsewhere in elevation. The chambers are long in elevation but taper (ventricles
  widen posteriorly, atria anteriorly) and lean (the LV deepens, the RV rises, the atria slide sideways), the
  chest wall deepens toward the rib above the window, echogenicity rises posteriorly, and the outflow tract
  (anterior) or the coronary sinus (posterior) appears.
* roll: the same changes as y, growing with depth (the plane tilts in elevation about the lateral axis), so the
  atria change more than the apex.
* yaw: the same changes, growing with the distance from the centre line and with opposite signs left and right
  (the plane turns about the beam axis): the centre line stays, the sides change.

Two trajectory modes (:mod:`cardiac_dreamer.phantom.trajectories`): ``"random"`` independent pairs whose move is
independent of ``at1``, and ``"sonographer"``, a walk drifting back to the view with frames shared between pairs.
"""
from __future__ import annotations

import argparse
import logging

from .phantom import (
    DEFAULT_FRAMES_PER_PATIENT, GENERATOR_VERSION, MARKER_FILE, MOVE_LIMITS, PATIENT_FILE, POSE_LIMITS,
    TRAJECTORIES, TRANSITIONS_FILE, PhantomPatient, generate_phantom,
)

__all__ = [
    "DEFAULT_FRAMES_PER_PATIENT", "GENERATOR_VERSION", "MARKER_FILE", "MOVE_LIMITS", "PATIENT_FILE", "POSE_LIMITS",
    "PhantomPatient", "TRAJECTORIES", "TRANSITIONS_FILE", "generate_phantom", "main",
]


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description="Write a synthetic echocardiography phantom.")
    parser.add_argument("output_dir")
    parser.add_argument("--patients", type=int, default=6)
    parser.add_argument("--pairs", type=int, default=None, help="pairs per patient (default: from --frames)")
    parser.add_argument("--frames", type=int, default=None,
                        help=f"frames per patient (default: {DEFAULT_FRAMES_PER_PATIENT} when --pairs is not given)")
    parser.add_argument("--trajectory", choices=TRAJECTORIES, default="random")
    parser.add_argument("--image_size", type=int, default=224)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    generate_phantom(args.output_dir, args.patients, args.pairs, args.image_size, args.seed,
                     frames_per_patient=args.frames, trajectory=args.trajectory)


if __name__ == "__main__":
    main()
