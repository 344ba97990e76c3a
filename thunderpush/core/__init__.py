"""The core: what Thunderpush is, with no HTTP, SockJS, Tornado or dialect in it.

* ``protocol`` - the wire vocabulary clients see byte for byte;
* ``hub`` - the connections of one app on this process, and fan-out to them
  (``welcomes``: what presence channels' connections are told of their members;
  ``recovery``: what a returning subscriber missed);
* ``members`` - who is in each presence channel, each user once;
* ``commands`` - the command language a browser speaks (CONNECT, SUBSCRIBE...);
* ``apps`` - the registry of apps (key, secret, hub), built by the server;
* ``broker`` - how a publish reaches every hub that has receivers;
* ``presence`` - who is online and where, as the API reports it;
* ``retention`` - how much of each channel's stream an app keeps (the policy);
* ``streams`` - the kept streams of this process's channels (the store);
* ``lasts`` - the last publication of the channels that keep one (a dialect's
  cache channels), in this process's memory;
* ``history`` - what the API reads of a channel's stream, wherever it is kept;
* ``listener`` - what a hub tells the backend when its channels and users change;
* ``results`` - answers now or later (``Result``), chained without a task.

A backend plugs in four seams, each with an in-memory implementation here:
``Broker``, ``Presence``, ``History`` and the hubs' ``Listener`` (given to
``Apps`` as a hub factory).  The cluster (``thunderpush.cluster``) implements
all four on Redis and nothing else changes.
"""
