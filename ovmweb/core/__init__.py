"""What every app shares and nothing else: the process entry points (``runovmweb``,
``bootstrap``) and the admin base classes that write through the service layer."""
