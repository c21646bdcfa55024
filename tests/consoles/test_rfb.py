import tracemalloc

import pytest

from ovmweb.consoles.rfb import HEADER_MAX, RfbInputFilter, RfbViolation

HANDSHAKE = b"RFB 003.008\n\x01\x01"
UPDATE = b"\x03\x01\x00\x00\x00\x00\x00\x10\x00\x10"  # FramebufferUpdateRequest


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
    assert f.feed(b"RFB 003.008\n\x02" + b"k" * 16 + b"\x01") == b"RFB 003.008\n\x02" + b"k" * 16 + b"\x01"


@pytest.mark.parametrize(
    "data", [b"RFB 003.003\n", HANDSHAKE + b"\x99", b"RFB 003.008\n\x13", HANDSHAKE + b"\xff\x01\x00\x00"]
)
def test_unknown_fails_closed(data):
    with pytest.raises(RfbViolation):
        RfbInputFilter().feed(data)


def test_client_init_asks_for_shared_access_whatever_the_viewer_sent():
    # ClientInit shared-flag 0 asks QEMU to disconnect every other client of the VM.
    f = RfbInputFilter()
    assert f.feed(b"RFB 003.008\n\x01\x00") == HANDSHAKE
    f = RfbInputFilter()
    out = b"".join(f.feed(bytes([b])) for b in b"RFB 003.008\n\x02" + b"k" * 16 + b"\x00")
    assert out == b"RFB 003.008\n\x02" + b"k" * 16 + b"\x01"


def test_huge_cut_text_is_skipped_by_counting_never_buffered():
    f = RfbInputFilter()
    assert f.feed(HANDSHAKE) == HANDSHAKE
    declared = 2**31 - 1  # the largest positive length (the signed field; -2**31 is as large)
    chunk = b"x" * (1 << 20)
    tracemalloc.start()
    try:
        assert f.feed(b"\x06\x00\x00\x00" + declared.to_bytes(4, "big")) == b""
        for _ in range(64):  # 64 MiB of clipboard: nothing passes, nothing is kept
            assert f.feed(chunk) == b""
        _now, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 256 * 1024


def test_cut_text_fed_in_chunks_then_the_next_message_passes():
    f = RfbInputFilter()
    f.feed(HANDSHAKE)
    text = b"y" * (3 * 1024 * 1024 + 7)
    stream = b"\x06\x00\x00\x00" + len(text).to_bytes(4, "big") + text + UPDATE
    out = b"".join(f.feed(stream[i : i + 65536]) for i in range(0, len(stream), 65536))
    assert out == UPDATE
    assert f.buffered == 0


def test_extended_clipboard_negative_length_is_skipped():
    f = RfbInputFilter()
    f.feed(HANDSHAKE)
    assert f.feed(b"\x06\x00\x00\x00" + (-3).to_bytes(4, "big", signed=True) + b"abc" + UPDATE) == UPDATE


def test_large_frame_of_dropped_input_keeps_the_buffer_small():
    # One WebSocket frame carrying thousands of key events: the buffer holds at most one header.
    f = RfbInputFilter()
    f.feed(HANDSHAKE)
    keys = b"\x04\x01\x00\x00\x00\x00\x00\x61" * 100_000
    out = f.feed(keys + b"\x04\x01\x00")
    assert out == b"" and f.buffered <= HEADER_MAX
    out = f.feed(b"\x00\x00\x00\x00\x61" + UPDATE[:5])
    assert f.buffered <= HEADER_MAX
    assert out + f.feed(UPDATE[5:]) == UPDATE


def test_forwarded_variable_message_streams_through():
    # SetEncodings with 65535 entries (256 KiB) passes as it arrives, not after being gathered.
    f = RfbInputFilter()
    f.feed(HANDSHAKE)
    body = b"\x00\x00\x00\x07" * 0xFFFF
    message = b"\x02\x00\xff\xff" + body
    out = f.feed(message[:4096])
    assert out == message[:4096] and f.buffered == 0
    assert f.feed(message[4096:]) == message[4096:]
    assert f.feed(b"\x04\x01\x00\x00\x00\x00\x00\x61") == b""
