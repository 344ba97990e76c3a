"""The live dashboard at ``/dashboard`` (``handlers``) and its login session (``session``)."""

from thunderpush.dashboard.handlers import urls

__all__ = ["urls"]
