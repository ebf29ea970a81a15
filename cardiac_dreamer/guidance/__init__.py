"""Guidance at the bedside: the real-time session and its closed-loop scoring in the phantom."""
