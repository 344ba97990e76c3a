"""The sockjs-tornado layer: the router, the HTTP transports, the adapter and origins.

sockjs-tornado 1.0.7 is dormant and pinned; what Thunderpush corrects or
reaches into is here and nowhere else.
"""
