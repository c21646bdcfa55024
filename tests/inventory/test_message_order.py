"""Seed 7.10: the root password is always sent last, whatever its place in the request."""

from ovmweb.inventory.services.messages import send_order


def _keys(messages):
    return [m["key"] for m in send_order([{"key": k} for k in messages])]


def test_root_password_goes_last_and_the_rest_keep_their_order():
    assert _keys(["root-password", "b", "a"]) == ["b", "a", "root-password"]
    assert _keys(["com.oracle.linux.root-password", "z", "y"]) == ["z", "y", "com.oracle.linux.root-password"]


def test_without_a_root_password_the_order_is_unchanged():
    assert _keys(["b", "a", "my-root-password-hint"]) == ["b", "a", "my-root-password-hint"]
