"""One request to a server's HTTP API, as a backend makes it.

``await call_api(server.url, "POST", "channels/news/", "1")`` answers with the
response whatever its status, so that a test asserts on errors as on successes.
"""

from __future__ import annotations

from tornado.httpclient import AsyncHTTPClient, HTTPResponse

from . import KEY, SECRET


async def call_api(
    base_url: str,
    method: str,
    path: str,
    body: bytes | str | None = None,
    secret: str | None = SECRET,
    key: str = KEY,
    headers: dict[str, str] | None = None,
) -> HTTPResponse:
    """One API request, returning the response whatever its status."""
    all_headers = api_headers(secret, headers)
    if body is None and method == "POST":
        body = b""
    return await AsyncHTTPClient().fetch(
        f"{base_url}/api/1.0.0/{key}/{path}",
        method=method,
        body=body,
        headers=all_headers,
        raise_error=False,
        allow_nonstandard_methods=True,
    )


def api_headers(secret: str | None, headers: dict[str, str] | None = None) -> dict[str, str]:
    """An API request's header fields: the secret (None: none sent), then ``headers``."""
    fields = {} if secret is None else {"X-Thunder-Secret-Key": secret}
    fields.update(headers or {})
    return fields
