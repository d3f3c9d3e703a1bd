"""The lean client's RESP encoding: hiredis' packer, and the fallback for what it refuses."""

from __future__ import annotations

from codeqd.store._lean import pack


def test_pack_encodes_each_argument_as_a_bulk_string() -> None:
    assert pack("EVALSHA", "ab", 1, "k", b"\x00raw", -3, 1.5, "é") == (
        b"*8\r\n$7\r\nEVALSHA\r\n$2\r\nab\r\n$1\r\n1\r\n$1\r\nk\r\n$4\r\n\x00raw\r\n"
        b"$2\r\n-3\r\n$3\r\n1.5\r\n$2\r\n\xc3\xa9\r\n"
    )


def test_what_hiredis_refuses_is_packed_as_its_text() -> None:
    assert pack("SET", True) == b"*2\r\n$3\r\nSET\r\n$4\r\nTrue\r\n"
