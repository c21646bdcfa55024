"""The ``ovmweb`` command line: an administrator's client of the REST API.

It talks to a server only over HTTP and WebSocket, exactly as any other client
would, and imports nothing of ovmweb's server packages (tests/test_architecture.py
checks it): it can be installed on a laptop without Django, and it cannot use a
back door the API does not offer."""
