"""The front door: one asyncio server on the port, its HTTP/1.1, limits and TLS.

It answers what it is handed (endpoints and upgrade targets, by
``thunderpush.server.application``) and passes every other request to Tornado.
"""
