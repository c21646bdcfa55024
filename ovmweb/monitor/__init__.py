"""The monitor: the orchestrator that follows what the servers really do.

It turns libvirt domain events and periodic reconciliation into inventory state
(seed 7.8), and is the home of metrics sampling, HA failover and pool policies.
It depends on the inventory services and the hypervisor layer; nothing below it
imports it. ``runovmweb`` runs it as an embedded service
(``ovmweb.monitor.service.Monitor``).
"""
