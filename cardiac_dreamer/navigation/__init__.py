"""Closed-loop guidance in the phantom: a simulated sonographer follows a policy's guidance, episodes are scored
from the true poses. What ``cardiac-evaluate --navigate`` runs.

policies (the model's session, oracle, stay, mean) -> simulator (episodes) -> scoring -> report (files, table);
:mod:`.runner` ties them to a checkpoint and its patients (:mod:`.patients`).
"""
from .runner import NavigationResult, NavigationSettings, navigate_checkpoint
from .simulator import Episode, EpisodeSettings, follow, run_episode

__all__ = ["Episode", "EpisodeSettings", "NavigationResult", "NavigationSettings", "follow", "navigate_checkpoint",
           "run_episode"]
