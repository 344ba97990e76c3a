"""Thunderpush: a self-hosted real-time push server (Tornado + SockJS)."""

__version__ = "2.0.0"
