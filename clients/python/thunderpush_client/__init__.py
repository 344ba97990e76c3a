"""The Thunderpush HTTP API for Python backends, and the token helpers.

Standard library only (Python 3.10 and later)::

    from thunderpush_client import Client

    with Client("http://localhost:8000", "key", "secret") as thunderpush:
        reached = thunderpush.publish("news", {"title": "Hello"})

* ``Client``: blocking calls (Django, Flask, scripts); ``AsyncClient``: the
  same methods for asyncio;
* ``ThunderpushError(status, message)``: a refused call, with the server's
  message; ``Unreachable``, one of them: no answer from the URL;
* ``thunderpush_client.auth``: user and channel tokens (docs/security.rst).
"""

from thunderpush_client.aio import AsyncClient
from thunderpush_client.calls import History, Message
from thunderpush_client.client import Client
from thunderpush_client.errors import ThunderpushError, Unreachable

__version__ = "2.0.0"

__all__ = [
    "AsyncClient",
    "Client",
    "History",
    "Message",
    "ThunderpushError",
    "Unreachable",
    "__version__",
]
