"""Request heads: which ones the front door serves itself, and their limits.

llhttp (``thunderpush.transports.door.http``) checks a head's syntax; Tornado
is stricter in places and answers some heads otherwise (``Expect``,
``If-None-Match``, chunked bodies...).  ``unusual`` says which heads the door
leaves to Tornado, the reference, so that what the door answers itself is
answered exactly as Tornado would.  The limits of a head, each with one outcome:

* a request llhttp refuses (a malformed or repeated ``Content-Length``, both
  ``Content-Length`` and ``Transfer-Encoding``, bare LF, obs-fold, control
  bytes...) or with more than ``MAX_HEADERS`` fields: Tornado's bare
  ``400 Bad Request``, then the connection is closed;
* a head over ``MAX_HEAD_SIZE`` bytes: closed without an answer, as Tornado does.

``HeadReader`` collects a head from llhttp's callbacks; ``HttpConnection`` is
one, and reads a head so::

    start, head_end = bounds(raw, start)
    if self._repeats or unusual(raw, start, method, self._url, self._values):
        ...  # hand the connection to Tornado from this request on
"""

from __future__ import annotations

from typing import NoReturn

from thunderpush.transports.door.deadlines import HEAD, Deadlines
from thunderpush.transports.door.messages import WHITESPACE

# Tornado's limit: a longer request head closes the connection.
MAX_HEAD_SIZE = 64 * 1024
# More header fields than this get 400, as with Apache's default; Tornado has no such limit.
MAX_HEADERS = 100

# The bytes of a Host that Tornado surely accepts (its rule is wider); it answers any other.
_HOST_BYTES = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789.-:[]"
_LINE_ENDS = b"\r\n"
_END_OF_HEAD = b"\r\n\r\n"
_VERSION = b" HTTP/1.1\r\n"
# Fields whose requests Tornado answers in its own way.
_TORNADOS = frozenset((b"transfer-encoding", b"expect", b"if-none-match"))


def bounds(raw: bytearray, start: int) -> tuple[int, int]:
    """Where the request whose head llhttp has read in ``raw`` from ``start`` begins
    (llhttp skips empty lines before a request line) and where its head ends."""
    while raw[start] in _LINE_ENDS:
        start += 1
    return start, raw.find(_END_OF_HEAD, start) + 4


def unusual(
    raw: bytearray, start: int, method: bytes, url: bytes, fields: dict[bytes, bytes]
) -> bool:
    """Whether Tornado should read the request at ``start`` of ``raw``: a target that
    is no path, a request line that is not exactly "METHOD SP target SP HTTP/1.1
    CRLF" (as Tornado requires), a field Tornado answers itself, or a Host it may
    not accept."""
    host = fields.get(b"host", b"").rstrip(WHITESPACE)
    return (
        not url.startswith(b"/")
        or not raw.startswith(_VERSION, start + len(method) + 1 + len(url))
        or not _TORNADOS.isdisjoint(fields)  # (``any`` over them: 0.3 us a request)
        or not host
        or bool(host.translate(None, _HOST_BYTES))
    )


class HeadReader(Deadlines):
    """llhttp's callbacks that collect a request head: its target (``_url``) and its
    fields (``_values``: names in lower case, each once; ``_repeats`` counts the
    fields whose name came before, which Tornado reads instead)."""

    __slots__ = ("_url", "_values", "_repeats")

    def __init__(self) -> None:
        super().__init__()
        self._url = b""
        self._values: dict[bytes, bytes] = {}
        self._repeats = 0

    def on_message_begin(self) -> None:
        self._url = b""
        self._values = {}
        self._repeats = 0
        if self._phase != HEAD:
            self.enter(HEAD)

    def on_url(self, url: bytes) -> None:
        self._url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        values = self._values
        key = name.lower()
        if key in values or len(values) >= MAX_HEADERS:
            self._repeats += 1
            if len(values) + self._repeats > MAX_HEADERS:
                self.too_many_fields()
        values[key] = value

    def too_many_fields(self) -> NoReturn:  # pragma: no cover - interface
        """More than ``MAX_HEADERS`` fields: refuse the request (and stop llhttp)."""
        raise NotImplementedError
