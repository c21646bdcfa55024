import pytest

from ovmweb.consoles.rfb import RfbInputFilter, RfbViolation

HANDSHAKE = b"RFB 003.008\n\x01\x01"


def test_byte_at_a_time_handshake_and_messages():
    f = RfbInputFilter()
    stream = (
        HANDSHAKE
        + b"\x02\x00\x00\x02"
        + b"\x00\x00\x00\x07"
        + b"\xff\xff\xfe\xfc"  # SetEncodings
        + b"\x04\x01\x00\x00\x00\x00\xff\x0d"  # KeyEvent Return: dropped
        + b"\xff\x00\x00\x01\x00\x00\x00\x1c\x00\x00\x00\x1c"  # QEMU extended key: dropped
        + b"\x06\x00\x00\x00\x00\x00\x00\x03abc"  # ClientCutText: dropped
        + b"\x03\x01\x00\x00\x00\x00\x00\x10\x00\x10"  # FramebufferUpdateRequest
        + b"\xfb\x00\x01\x02"  # xvp reboot: dropped
    )
    out = b"".join(f.feed(stream[i : i + 1]) for i in range(len(stream)))
    assert (
        out
        == HANDSHAKE + b"\x02\x00\x00\x02\x00\x00\x00\x07\xff\xff\xfe\xfc" + b"\x03\x01\x00\x00\x00\x00\x00\x10\x00\x10"
    )


def test_vnc_auth_response_passes():
    f = RfbInputFilter()
    assert f.feed(b"RFB 003.008\n\x02" + b"k" * 16 + b"\x00") == b"RFB 003.008\n\x02" + b"k" * 16 + b"\x00"


@pytest.mark.parametrize(
    "data", [b"RFB 003.003\n", HANDSHAKE + b"\x99", b"RFB 003.008\n\x13", HANDSHAKE + b"\xff\x01\x00\x00"]
)
def test_unknown_fails_closed(data):
    with pytest.raises(RfbViolation):
        RfbInputFilter().feed(data)
