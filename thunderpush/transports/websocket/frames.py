"""RFC 6455 frame encoding, shared by the server and the load generator.

The server writes every delivery through ``frame`` (unmasked, as servers send
them); the load generator writes its commands through ``frame`` with a
``mask`` (clients must mask).  Reading client frames is left to the
``websockets`` library, but for the one frame most clients ever send
(``whole_text``: a command, whole, in one read), which no library object
need be made for.
"""

from __future__ import annotations

import struct

TEXT, BINARY, CLOSE, PING, PONG = 0x1, 0x2, 0x8, 0x9, 0xA
CONTINUATION = 0x0

_FIN = 0x80
_MASKED = 0x80
_SHORT = struct.Struct("!BB")
_MEDIUM = struct.Struct("!BBH")
_LONG = struct.Struct("!BBQ")


def frame(opcode: int, payload: bytes, mask: bytes | None = None) -> bytes:
    """One final frame; with a 4-byte ``mask``, masked as a client sends it."""
    first = _FIN | opcode
    length = len(payload)
    flag = _MASKED if mask is not None else 0
    if length < 126:
        header = _SHORT.pack(first, flag | length)
    elif length <= 0xFFFF:
        header = _MEDIUM.pack(first, flag | 126, length)
    else:
        header = _LONG.pack(first, flag | 127, length)
    if mask is None:
        return header + payload
    return header + mask + apply_mask(payload, mask)


def client_frame_size(length: int) -> int:
    """The bytes of a masked frame with a ``length``-byte payload, lengths encoded shortest."""
    if length < 126:
        return 6 + length
    return (8 if length <= 0xFFFF else 14) + length


def whole_text(data: bytes, max_size: int | None) -> str | None:
    """The text of ``data`` when it is exactly one final, masked text frame that
    the library would take as a valid message (no extension bits, at most
    ``max_size`` bytes, UTF-8); None for anything else, which the library reads.
    """
    if len(data) < 6 or data[0] != _FIN | TEXT:
        return None
    length = data[1] ^ _MASKED  # 128 and over: not masked, a protocol error
    start = 6
    if length == 126 and len(data) >= 8:
        length, start = (data[2] << 8) | data[3], 8
    elif length >= 126:
        return None
    if len(data) != start + length or (max_size is not None and length > max_size):
        return None
    try:
        return apply_mask(data[start:], data[start - 4 : start]).decode()
    except UnicodeDecodeError:
        return None  # the library closes with 1007


def apply_mask(data: bytes, mask: bytes) -> bytes:
    """XOR ``data`` with the repeated 4-byte ``mask`` (its own inverse)."""
    length = len(data)
    if not length:
        return b""
    key = (mask * (length // 4 + 1))[:length]
    return (int.from_bytes(data, "big") ^ int.from_bytes(key, "big")).to_bytes(length, "big")


def text_frame(payload: bytes) -> bytes:
    """A server's text frame: what every delivery travels in."""
    return frame(TEXT, payload)
