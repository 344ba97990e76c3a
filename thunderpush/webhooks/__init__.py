"""Webhooks: the backend is told when channels and users come and go (docs/webhooks.rst).

* ``events`` - the four events, the body of a POST and its signature;
* ``sender`` - each app's bounded queue of events, and the task that POSTs them.

Where the events come from: in one process, the hub's own transitions
(``thunderpush.core.hub``); in a cluster, Redis's answers to the node's count
writes and to the cleanup after a node that died or left
(``thunderpush.cluster.registry``).
"""
