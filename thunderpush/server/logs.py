"""The log as operators read it: readable lines or JSON, who a line concerns, a file
that SIGHUP reopens, and a statistics line every minute.

A line about a client carries its context as ``extra`` fields (``CONTEXT``:
app, user, client address, session), which the text format appends in
brackets and the JSON format writes as keys, so that one misbehaving client
can be told from the rest.  Under ``--workers`` every line of a worker names
it (``name_worker``): ``worker 2`` before the message, ``"worker": 2`` in
JSON, so that N processes writing one log can be told apart.  Secrets are
never passed to a log call: a Redis URL is logged through
``thunderpush.settings.masked_url``.
"""

from __future__ import annotations

import asyncio
import json
import logging
import sys
import time
from typing import TYPE_CHECKING, Any, TextIO

if TYPE_CHECKING:
    from thunderpush.observe.figures import Figures

logger = logging.getLogger("thunderpush")

# The fields a line about one client may carry, in the order they are shown.
CONTEXT = ("app", "user", "address", "session")
_TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def name_worker(number: int) -> None:
    """Every log record this process makes from now on names worker ``number``."""
    make = logging.getLogRecordFactory()

    def named(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = make(*args, **kwargs)
        record.worker = number
        return record

    logging.setLogRecordFactory(named)


class TextFormatter(logging.Formatter):
    """``time LEVEL logger: [worker N: ]message [app=... user=... address=... session=...]``."""

    def __init__(self) -> None:
        super().__init__(_TEXT_FORMAT)

    def formatMessage(self, record: logging.LogRecord) -> str:  # noqa: N802 - logging's name
        worker = getattr(record, "worker", None)
        message = record.message if worker is None else f"worker {worker}: {record.message}"
        line = _TEXT_FORMAT % {**record.__dict__, "message": message}
        context = " ".join(
            f"{name}={value}" for name, value in _context(record) if value is not None
        )
        return f"{line} [{context}]" if context else line


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, the context, a traceback."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": self.formatTime(record),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        worker = getattr(record, "worker", None)
        if worker is not None:
            entry["worker"] = worker
        entry.update((name, value) for name, value in _context(record) if value is not None)
        statistics = getattr(record, "statistics", None)
        if statistics is not None:
            entry["statistics"] = statistics
        if record.exc_info:
            entry["traceback"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False, default=str)

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:  # noqa: N802
        seconds = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
        return f"{seconds}.{int(record.msecs):03d}Z"


def _context(record: logging.LogRecord) -> list[tuple[str, Any]]:
    return [(name, getattr(record, name, None)) for name in CONTEXT]


class LogOutput:
    """Where the log goes: stderr, or a file that ``reopen`` opens again after rotation."""

    def __init__(self, log_format: str, path: str | None) -> None:
        self.path = path
        # Raises OSError when the file cannot be opened: the caller says so and stops.
        stream: TextIO = sys.stderr if path is None else _open(path)
        self.handler = logging.StreamHandler(stream)
        self.handler.setFormatter(JsonFormatter() if log_format == "json" else TextFormatter())

    def reopen(self) -> None:
        """Opens the file again (logrotate moved it); a failure keeps the old one, logged."""
        if self.path is None:
            return
        try:
            stream = _open(self.path)
        except OSError as error:
            logger.warning(
                "Cannot reopen the log file %s (%s); still writing to the old one.",
                self.path,
                error.strerror,
            )
            return
        self.handler.setStream(stream).close()


def _open(path: str) -> TextIO:
    return open(path, "a", encoding="utf-8", buffering=1)  # noqa: SIM115 - the handler owns it


def configure(log_format: str, path: str | None, verbose: bool) -> LogOutput:
    """Sends every log line to one output: INFO and up, or everything with ``verbose``.

    Raises OSError when the log file cannot be opened.
    """
    output = LogOutput(log_format, path)
    root = logging.getLogger()
    root.handlers[:] = [output.handler]
    root.setLevel(logging.DEBUG if verbose else logging.INFO)
    # One line per HTTP request is debugging detail, not operations news.
    logging.getLogger("tornado.access").setLevel(logging.DEBUG if verbose else logging.WARNING)
    return output


def statistics(figures: Figures) -> dict[str, int]:
    """This process's figures over every app: open connections, users, channels,
    and messages in (publishes and sends to a user) and out (deliveries) so far."""
    totals = dict.fromkeys(("connections", "users", "channels", "messages_in", "messages_out"), 0)
    for app in figures.apps:
        hub = app.hub
        totals["connections"] += hub.connection_count()
        totals["users"] += len(hub.users)
        totals["channels"] += len(hub.channels)
        totals["messages_in"] += hub.messages
        totals["messages_out"] += hub.delivered_to_channels + hub.delivered_to_users
    return totals


async def log_statistics(figures: Figures, interval: float) -> None:
    """Every ``interval`` seconds, an INFO line: the figures, and the messages since the last."""
    before = statistics(figures)
    while True:
        await asyncio.sleep(interval)
        now = statistics(figures)
        came, went = (now[name] - before[name] for name in ("messages_in", "messages_out"))
        logger.info(
            "Statistics: %d connections, %d users, %d channels; "
            "%d messages in and %d out in the last %g s.",
            now["connections"],
            now["users"],
            now["channels"],
            came,
            went,
            interval,
            extra={"statistics": {**now, "messages_in_period": came, "messages_out_period": went}},
        )
        before = now
