"""Process-wide settings, filled in from the command line by ``runner``.

Embedding applications may set these before calling ``runner.run_app`` instead
of passing arguments; the names are the original Thunderpush's.
"""

# Public API key: appears in URLs and in the client's CONNECT command.
APIKEY = ""

# Secret key that backends send in the X-Thunder-Secret-Key header.
APISECRET = ""

PORT = 8080

# Address to bind to; empty means every interface.
HOST = ""

# Tornado debug/autoreload mode.
DEBUG = False

# DEBUG logging on stderr.
VERBOSE = False

PIDPATH = "/tmp/thunderpush.pid"

# The sockjs-client that the SockJS iframe page loads: the release the bundled
# client is tested with, so that iframe transports speak the same version.
SOCKJS_URL = "https://cdn.jsdelivr.net/npm/sockjs-client@1.6.1/dist/sockjs.min.js"

# Largest HTTP API request body; larger ones get 413 before they are buffered.
MAX_BODY_SIZE = 1024 * 1024

# Largest SockJS message a browser may send (commands are a few bytes long).
MAX_CLIENT_MESSAGE_SIZE = 64 * 1024
