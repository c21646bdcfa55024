"""Forms of the management UI. They check types and shapes only; every rule
(state, vCPU/memory limits, domain type vs installation source, ...) is the
service's, and its errors are put back next to the field that caused them.

One module per area: ``vms`` (create, edit, hardware), ``vm_operations``,
``infrastructure`` (servers, pools, networks) and ``storage``."""
