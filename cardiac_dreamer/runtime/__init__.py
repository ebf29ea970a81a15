"""How a process uses this machine: CPU threads, the heap policy, devices."""
