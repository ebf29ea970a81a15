"""Closed-loop guidance in the phantom: a simulated sonographer follows a policy's guidance, episodes are scored
from the true poses. What ``cardiac-evaluate --navigate`` runs.

policies (the model's session, oracle, stay, mean) -> simulator (episodes) -> scoring -> report (files, table);
:mod:`.runner` ties them to a checkpoint, its patients (:mod:`.patients`) and its training range (:mod:`.starts`);
what a run is asked for is :mod:`cardiac_dreamer.guidance.settings`, what it found :mod:`.result`.
"""
from ..settings import EpisodeSettings, NavigationSettings
from .result import NavigationResult
from .runner import navigate_checkpoint
from .simulator import Episode, follow, run_episode

__all__ = ["Episode", "EpisodeSettings", "NavigationResult", "NavigationSettings", "follow", "navigate_checkpoint",
           "run_episode"]
