"""The HTTP API that backends call: ``/api/1.0.0/<apikey>/...``.

* ``answers`` - what a response is (``Answer``) and every error the API gives;
* ``actions`` - what each route does, through the app's broker and presence;
* ``calls`` - ``Api``: checks a request's method, key and size, then runs it;
* ``handlers`` - the same API as Tornado handlers, for requests Tornado serves.

The front door (``thunderpush.transports``) and the Tornado handlers both go
through ``Api.start`` and ``Call.finish``, so their answers are the same.
"""

from thunderpush.api.answers import Answer, ApiError
from thunderpush.api.calls import Api, Call

__all__ = ["Answer", "Api", "ApiError", "Call"]
