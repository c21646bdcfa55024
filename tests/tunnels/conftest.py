from tests.tunnels.sshd import sshd  # noqa: F401
