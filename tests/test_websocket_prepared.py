"""The handshake's and the first frame's fast paths give what the library gives.

A browser's usual handshake is answered from prepared text, and one whole
text frame between messages is read without the library's protocol
(``thunderpush.transports.websocket.handshake._prepared``,
``thunderpush.transports.websocket.frames.whole_text``): each is checked here
against the library's own answer for the same input, usual or not.
"""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st
from websockets.frames import Opcode
from websockets.protocol import OPEN
from websockets.server import ServerProtocol

from thunderpush.transports.websocket import handshake
from thunderpush.transports.websocket.frames import whole_text
from thunderpush.transports.websocket.handshake import answer
from thunderpush.transports.websocket.service import AnyOrigin

from .support.wire import RawClient

_KEY = ("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ==")
_USUAL = [
    ("Host", "x"),
    ("Upgrade", "websocket"),
    ("Connection", "Upgrade"),
    _KEY,
    ("Sec-WebSocket-Version", "13"),
]


def _with(**changes: str | None) -> list[tuple[str, str]]:
    """The usual fields, ``name=value`` replacing one (None: dropping it), in order."""
    names = {name.lower().replace("-", "_"): name for name, _ in _USUAL}
    fields = [(name, value) for name, value in _USUAL]
    for key, value in changes.items():
        name = names.get(key, key.replace("_", "-").title())
        fields = [(n, v) for n, v in fields if n != name]
        if value is not None:
            fields.append((name, value))
    return fields


class _Only:
    def __init__(self, origin: str) -> None:
        self.origin = origin

    def allows(self, origin: str | None, host: str | None) -> bool:
        return origin == self.origin


# One field of the usual handshake changed (or added, or dropped), a line each.
_CHANGES = """
connection: keep-alive, Upgrade
connection: Upgrade, keep-alive
connection: close
upgrade: WebSocket
upgrade: websocket, h2c
upgrade (dropped)
origin: https://page.example
origin: https://other.example
sec-websocket-origin: https://page.example
sec-websocket-extensions: permessage-deflate; x
sec-websocket-protocol: chat
sec-websocket-protocol (empty)
sec-websocket-key: c2hvcnQ=
sec-websocket-key: dGhlIHNhbXBsZSBub25jZQ
sec-websocket-key: dGhlIHNhbXBsZSBub25jZQ=!
sec-websocket-key: dGhlIHNhbXBsZSBub25jZR==
sec-websocket-key (dropped)
sec-websocket-version: 12
sec-websocket-version (dropped)
"""


def _changed(line: str) -> list[tuple[str, str]]:
    """The usual fields with ``line``'s change ("name: value", "name (empty)",
    "name (dropped)")."""
    name, _, value = line.partition(": ")
    name, _, marker = name.partition(" ")
    new = {"(dropped)": None, "(empty)": ""}.get(marker, value)
    return _with(**{name.replace("-", "_"): new})


# Field lists a GET over HTTP/1.1 may carry, usual or not.
_FIELDS = [
    _USUAL,
    [(name.lower(), value) for name, value in _USUAL],
    *(_changed(line) for line in _CHANGES.strip().splitlines()),
    [*_USUAL, ("Host", "y")],
    [*_USUAL, _KEY],
]
_CASES = [
    *(("GET", "HTTP/1.1", fields) for fields in _FIELDS),
    ("POST", "HTTP/1.1", _USUAL),
    ("GET", "HTTP/1.0", _USUAL),
]


@pytest.mark.parametrize("origins", [AnyOrigin(), _Only("https://page.example")])
@pytest.mark.parametrize(("method", "version", "fields"), _CASES)
def test_the_prepared_answer_is_the_librarys(monkeypatch, origins, method, version, fields):
    def answered() -> tuple:
        given = answer(origins, method, "/echo/websocket", "", version, list(fields), "::1")
        response = given.response
        refusal = None
        if response is not None:
            refusal = (response.status_code, response.body, response.headers.raw_items())
        data = re.sub(rb"Date: [^\r]*", b"", given.data)
        return given.accepted, data, refusal if not given.accepted else None

    fast = answered()
    monkeypatch.setattr(handshake, "_prepared", lambda *_: None)
    library = answered()
    assert _dated(fast) == _dated(library)


def _dated(answered: tuple) -> tuple:
    """Refusals carry the library's Date: the second may change between two."""
    accepted, data, refusal = answered
    if refusal is None:
        return answered
    status, body, fields = refusal
    return accepted, data, (status, body, [(n, v) for n, v in fields if n != "Date"])


def _library_text(data: bytes, max_size: int | None) -> str | None:
    """What a reader between messages makes of ``data``: one whole valid text message, or None."""
    protocol = ServerProtocol(state=OPEN, max_size=max_size)
    protocol.receive_data(data)
    events = protocol.events_received()
    if protocol.state is not OPEN or protocol.data_to_send() or len(events) != 1:
        return None
    (event,) = events
    if event.opcode is not Opcode.TEXT or not event.fin:
        return None
    try:
        return event.data.decode()
    except UnicodeDecodeError:
        return None


_PAYLOADS = st.one_of(
    st.text(max_size=300).map(str.encode),
    st.binary(max_size=300),
    st.sampled_from([b'["CONNECT alice:key","SUBSCRIBE news"]', b"", b"\xff", b"x" * 126]),
)


@given(
    payload=_PAYLOADS,
    opcode=st.sampled_from([0x0, 0x1, 0x2, 0x9, 0x1 | 0x40]),
    fin=st.booleans(),
    mask=st.booleans(),
    extra=st.sampled_from([b"", b"\x81", RawClient.frame(0x1, b"more")]),
    max_size=st.sampled_from([None, 64, 1024]),
)
def test_whole_text_reads_only_what_the_library_reads_as_one_message(
    payload, opcode, fin, mask, extra, max_size
):
    data = RawClient.frame(opcode, payload, fin=fin, mask=mask) + extra
    text = whole_text(data, max_size)
    assert text is None or text == _library_text(data, max_size)
    if (opcode, fin, mask, extra) == (0x1, True, True, b"") and len(payload) < 126:
        assert text == _library_text(data, max_size)  # the usual case is never left out


@pytest.mark.parametrize("length", [0, 125, 126, 300, 0xFFFF])
def test_whole_text_reads_a_medium_length(length):
    payload = b"x" * length
    key = b"abcd"
    masked = bytes(b ^ key[i % 4] for i, b in enumerate(payload))
    header = (
        bytes([0x81, 0x80 | length])
        if length < 126
        else bytes([0x81, 0xFE, length >> 8, length & 0xFF])
    )
    data = header + key + masked
    assert whole_text(data, None) == _library_text(data, None) == payload.decode()
