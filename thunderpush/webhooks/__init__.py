"""Webhooks: the backend is told when channels and users come and go (docs/webhooks.rst).

* ``events`` - the events, the two formats (Thunderpush's and Pusher's), the
  body of a POST and its headers;
* ``pending`` - one kind's queue: one event per name, coalesced (or every
  event, for client events);
* ``sender`` - each app's queues, one per kind, and the task that POSTs them;
* ``post`` - the POSTs, on aiohttp's client, whose connections are kept.

Where the events come from: in one process, the hub's own transitions
(``thunderpush.core.hub``: channels, users, presence members); in a cluster,
Redis's answers to the node's count and member writes and to the cleanup
after a node that died or left (``thunderpush.cluster.registry``,
``thunderpush.cluster.departures``); client events from the Pusher connection
that got one (``thunderpush.pusher.client_events``), on whichever node it is.
"""
