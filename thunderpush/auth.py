"""Kept for existing backends: the token helpers live in ``thunderpush_client.auth``
(the ``thunderpush-client`` distribution, which the server ships too)."""

from thunderpush_client.auth import *  # noqa: F403 - the alias: the same functions
