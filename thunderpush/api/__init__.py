"""The HTTP API that backends call: ``/api/1.0.0/<apikey>/...``.

* ``answers`` - the API's answers (JSON, with CORS) and errors;
* ``actions`` - what each route does, through the app's broker and presence;
* ``calls`` - ``Api``: the endpoint; routes a request, checks its method, key
  and size, then runs it.

``Api`` is an endpoint (``thunderpush.transports.door.endpoints``): the front
door serves it, and Tornado through the same ``Api.start`` and ``Call.finish``
(``thunderpush.transports.door.fallback``) for what the door hands off, so
their answers are the same.
"""

from thunderpush.api.calls import Api, Call
from thunderpush.transports.door.answers import Answer, ApiError

__all__ = ["Answer", "Api", "ApiError", "Call"]
