"""Pusher's HMAC-SHA256 signatures, exactly as Pusher's own libraries compute them.

The HTTP API's request signature signs the method, the path and the query
parameters; the secret never travels.  Checks compare in constant time
(``hmac.compare_digest``) so that timing tells nothing about the expected value.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping


def _hex_hmac(secret: str, text: str) -> str:
    return hmac.new(secret.encode("utf-8"), text.encode("utf-8"), hashlib.sha256).hexdigest()


def request_signature(secret: str, method: str, path: str, params: Mapping[str, str]) -> str:
    """The ``auth_signature`` of an HTTP API request.

    What is signed is ``METHOD\\nPATH\\nQUERY``, where QUERY is every
    parameter but ``auth_signature``, keys lower-cased, sorted by key,
    ``key=value`` joined with ``&`` and *not* URL-encoded (Pusher's HTTP API
    reference; the ``pusher`` PyPI library's ``make_query_string``).
    """
    pairs = sorted((key.lower(), value) for key, value in params.items() if key != "auth_signature")
    query = "&".join(f"{key}={value}" for key, value in pairs)
    return _hex_hmac(secret, f"{method}\n{path}\n{query}")


def same(expected: str, given: str) -> bool:
    """Whether a signature given by a client is the expected one, in constant time."""
    return hmac.compare_digest(expected.encode("utf-8"), given.encode("utf-8"))
