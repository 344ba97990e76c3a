"""How bytes reach and leave the hub: the front door, HTTP, websockets, fan-out and SockJS.

sockjs-tornado decorates its handlers with its own deprecated ``@asynchronous``
at import time, so importing it under ``-W error::DeprecationWarning`` fails.
That one warning is silenced here, before any module of this package imports
sockjs-tornado, and nothing broader.
"""

import warnings

warnings.filterwarnings(
    "ignore", message="@asynchronous is deprecated", category=DeprecationWarning
)
