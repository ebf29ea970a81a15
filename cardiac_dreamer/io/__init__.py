"""Files a run writes and reads: atomic writes, the checkpoint format, the run directory."""
