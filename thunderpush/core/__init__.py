"""The core: what Thunderpush is, with no HTTP, SockJS or Tornado in it.

* ``protocol`` - the wire vocabulary clients see byte for byte;
* ``hub`` - the connections of one app on this process, and fan-out to them;
* ``members`` - who is in each presence channel, each user once;
* ``commands`` - the command language a browser speaks (CONNECT, SUBSCRIBE...);
* ``apps`` - the registry of apps (key, secret, hub), built by the server;
* ``broker`` - how a publish reaches every hub that has receivers;
* ``presence`` - who is online and where, as the API reports it.

The broker and presence are interfaces with an in-memory implementation; a
cluster backend implements the same two interfaces and nothing else changes.
"""
