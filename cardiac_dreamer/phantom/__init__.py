"""The procedural echocardiography phantom: anatomy (v3) / people (v4) -> rendering -> patient -> trajectories ->
writer, and the checks that compare it with a real export (:mod:`.checks`).

See :mod:`cardiac_dreamer.synthetic` for what is simulated and how each axis shows in the image.
"""
from .patient import DEFAULT_VERSION, GENERATOR_VERSION, PATIENT_FILE, VERSIONS, PhantomPatient
from .trajectories import DEFAULT_FRAMES_PER_PATIENT, MOVE_LIMITS, POSE_LIMITS, TRAJECTORIES
from .writer import MARKER_FILE, TRANSITIONS_FILE, generate_phantom

__all__ = [
    "DEFAULT_FRAMES_PER_PATIENT", "DEFAULT_VERSION", "GENERATOR_VERSION", "MARKER_FILE", "MOVE_LIMITS",
    "PATIENT_FILE", "POSE_LIMITS", "PhantomPatient", "TRAJECTORIES", "TRANSITIONS_FILE", "VERSIONS",
    "generate_phantom",
]
