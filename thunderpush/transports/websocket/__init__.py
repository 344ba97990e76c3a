"""The websocket engine: handshake, socket, fan-out frames and one heartbeat timer.

Sans-I/O framing by ``websockets``, run straight on asyncio transports; the
load generator imports ``frames`` alone, so this package imports nothing.
"""
