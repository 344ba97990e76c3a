"""What operators see of a running server: metrics, health, the snapshot, the drain.

* ``figures`` - what the rest reads of a server (``Figures``, a Protocol the server
  implements in ``thunderpush.server.figures``): no server, door or router here;
* ``tally`` - plain counters the delivery path bumps (no Prometheus there);
* ``metrics`` - the Prometheus registry that reads everything at scrape time;
* ``snapshot`` - the same figures as one dict, for the dashboard;
* ``endpoints`` - ``/metrics``, ``/health`` and ``/ready`` as Tornado handlers;
* ``drain`` - closing sessions in batches on SIGTERM, so clients move smoothly.

Nothing here is imported by the delivery path except ``tally``, which imports nothing.
"""
