"""Throughput of training and of the data loader: the figures the performance docs quote."""
