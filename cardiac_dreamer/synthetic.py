"""A procedural echocardiography phantom, written in exactly the real export format.

Why: demos, tests and benchmarks need data whose images carry the probe pose, without patient data; a closed-loop
simulator needs a heart it can image at any pose.

Two versions. ``v4`` (the default) is built to look like a real export: 224x224 RGB PNGs of a fan-shaped sector
(27 % of the pixels black outside it), Rayleigh speckle, depth attenuation, each patient's gain and contrast; sweeps
that start far from the view (roll ~50, yaw ~-37 degrees) and converge to it, pairs 1-4 frames apart with moves of
the real size; patients whose hearts differ in size (+-15 %), position (+-10 mm), axis (+-15 degrees) and chamber
proportions; a beating heart and a breathing shift. ``v3`` (below) is the static phantom the earlier figures and
some tests were calibrated on; ``--phantom v3`` or ``generate_phantom(..., version="v3")`` writes it.
:mod:`cardiac_dreamer.phantom.checks` compares an export with the real figures (``--table``).

The code lives in :mod:`cardiac_dreamer.phantom` (anatomy -> rendering -> patient -> trajectories -> writer); this
module is its public face and command line.

v3, what v4 builds on. Each patient is a static 3-D heart in a voxel volume (2 mm): four chambers (blood cavities in
myocardial walls), mitral and tricuspid valves, papillary muscles, the left ventricular outflow tract (anterior:
the five-chamber view) and the coronary sinus (posterior), pericardium, epicardial fat, the chest wall above the
apex, and lungs just outside the target sector, with a static tissue texture. A frame is the volume's slice at the
probe pose, seen through a 90-degree, 160 mm sector with depth attenuation, fresh per-frame speckle and a display
gamma. Patients differ only a little (a few % of size, ~1 mm and ~2 degrees of jitter, a target view aimed ~1 mm /
~1 degree differently), so the pose -> image mapping learnt on some patients applies to others.

Not simulated in either: Doppler, shadowing and reverberation, beam width, probe pressure (v3 has no cardiac motion
or breathing either; v4 has both).

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

Three trajectory modes (:mod:`cardiac_dreamer.phantom.trajectories`): ``"sweep"`` (v4's default) sweeps that
converge to the view, each pair its own two files; ``"random"`` (v3's default) independent pairs whose move is
independent of ``at1``; and ``"sonographer"``, a walk drifting back to the view with frames shared between pairs.
"""
from __future__ import annotations

from .phantom import (
    DEFAULT_FRAMES_PER_PATIENT, DEFAULT_VERSION, GENERATOR_VERSION, MARKER_FILE, MOVE_LIMITS, PATIENT_FILE,
    POSE_LIMITS, TRAJECTORIES, TRANSITIONS_FILE, VERSIONS, PhantomPatient, generate_phantom,
)

__all__ = [
    "DEFAULT_FRAMES_PER_PATIENT", "DEFAULT_VERSION", "GENERATOR_VERSION", "MARKER_FILE", "MOVE_LIMITS",
    "PATIENT_FILE", "POSE_LIMITS", "PhantomPatient", "TRAJECTORIES", "TRANSITIONS_FILE", "VERSIONS",
    "generate_phantom", "main",
]


def main(argv=None) -> int:
    """``python -m cardiac_dreamer.synthetic``, which lives in :mod:`cardiac_dreamer.cli.phantom_command`; imported
    when called, since importing ``cli`` sets the process's thread policy and a notebook importing this module
    should not get it."""
    from .cli.phantom_command import main as command

    return command(argv)


if __name__ == "__main__":
    raise SystemExit(main())
