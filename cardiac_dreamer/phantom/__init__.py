"""The procedural echocardiography phantom: anatomy -> rendering -> patient -> trajectories -> writer.

See :mod:`cardiac_dreamer.synthetic` for what is simulated and how each axis shows in the image.
"""
from .patient import GENERATOR_VERSION, PATIENT_FILE, PhantomPatient
from .trajectories import DEFAULT_FRAMES_PER_PATIENT, MOVE_LIMITS, POSE_LIMITS, TRAJECTORIES
from .writer import MARKER_FILE, TRANSITIONS_FILE, generate_phantom

__all__ = [
    "DEFAULT_FRAMES_PER_PATIENT", "GENERATOR_VERSION", "MARKER_FILE", "MOVE_LIMITS", "PATIENT_FILE", "POSE_LIMITS",
    "PhantomPatient", "TRAJECTORIES", "TRANSITIONS_FILE", "generate_phantom",
]
