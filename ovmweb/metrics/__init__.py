"""Metrics: samples of VMs, servers and repositories over time, bounded per object."""
