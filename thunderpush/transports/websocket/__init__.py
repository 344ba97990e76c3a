"""The websocket engine: handshake, socket (and its frame reader), fan-out frames, one
heartbeat timer, and the service that carries what a server's websockets share.

Sans-I/O framing by ``websockets``, run straight on asyncio transports; the
load generator imports ``frames`` alone, so this package imports nothing.
"""
