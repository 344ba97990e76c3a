"""Webhooks: the backend is told when channels and users come and go (docs/webhooks.rst).

* ``events`` - the four events, the body of a POST and its signature;
* ``pending`` - one kind's queue (channels, users): one event per name, coalesced;
* ``sender`` - each app's two queues, and the task that POSTs them;
* ``post`` - the POSTs, on aiohttp's client, whose connections are kept.

Where the events come from: in one process, the hub's own transitions
(``thunderpush.core.hub``); in a cluster, Redis's answers to the node's count
writes and to the cleanup after a node that died or left
(``thunderpush.cluster.registry``).
"""
