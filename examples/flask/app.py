"""A Flask site with live messages from Thunderpush: the whole integration in one file.

What a site does to use Thunderpush, and nothing else:

- it logs its users in (here: any name, in a session cookie; use your own login);
- it gives the logged-in page its user token (``POST /push/token``) and, for a
  private channel the user may read, a channel token (``POST /push/auth``);
- its page loads ``/thunderpush.js`` from the Thunderpush server and
  sockjs-client from this site (no CDN), and shows what arrives;
- it publishes through the Python client (``POST /publish``): to ``news``,
  which every page reads, or to one user's ``private-inbox-<user>``.

Run it as examples/flask/README.md says.  The settings come from the environment:
``THUNDERPUSH_URL`` (the API, as the backend reaches it), ``THUNDERPUSH_PUBLIC``
(``host:port`` of the server as browsers reach it), ``THUNDERPUSH_APIKEY``,
``THUNDERPUSH_APISECRET``, ``FLASK_SECRET_KEY`` and ``SOCKJS_FILE``.
"""

from __future__ import annotations

# [tokens] docs/security.rst shows from here to [/tokens].
import os
import re
import secrets
from collections.abc import Callable
from functools import wraps
from pathlib import Path
from typing import Any

from flask import (
    Flask,
    abort,
    jsonify,
    redirect,
    render_template,
    request,
    send_file,
    session,
    url_for,
)
from thunderpush_client import Client, ThunderpushError
from thunderpush_client.auth import channel_token, user_token

HERE = Path(__file__).resolve().parent
THUNDERPUSH_URL = os.environ.get("THUNDERPUSH_URL", "http://127.0.0.1:8000")
THUNDERPUSH_PUBLIC = os.environ.get("THUNDERPUSH_PUBLIC", "127.0.0.1:8000")
APIKEY = os.environ.get("THUNDERPUSH_APIKEY", "key")
SECRET = os.environ.get("THUNDERPUSH_APISECRET", "secret")
# sockjs-client's one file, served by this site (README.md says where it comes from).
SOCKJS_FILE = Path(os.environ.get("SOCKJS_FILE", HERE / "static" / "sockjs.min.js"))
TOKEN_TTL = 600

# A user name is also part of a channel name (private-inbox-<user>), so it
# keeps to what both allow.
USER_NAME = re.compile(r"[A-Za-z0-9_-]{1,32}")
NEWS = "news"

app = Flask(__name__)
# Signs the session cookie.  A generated key logs everybody out on a restart:
# set FLASK_SECRET_KEY to keep sessions across restarts.
app.secret_key = os.environ.get("FLASK_SECRET_KEY") or secrets.token_hex(32)
app.config["SESSION_COOKIE_SAMESITE"] = "Lax"


def inbox(user: str) -> str:
    """The private channel only ``user`` may read."""
    return f"private-inbox-{user}"


def may_read(user: str, channel: str) -> bool:
    """This site's rule for private channels: a user reads their own inbox only."""
    return channel == inbox(user)


def login_required(view: Callable[..., Any]) -> Callable[..., Any]:
    """Pages go to the login form; the JSON endpoints answer 401."""

    @wraps(view)
    def guarded(*args: Any, **kwargs: Any) -> Any:
        if "user" not in session:
            if request.method == "GET":
                return redirect(url_for("login"))
            abort(401)
        return view(*args, **kwargs)

    return guarded


@app.route("/login", methods=["GET", "POST"])
def login() -> Any:
    error = None
    if request.method == "POST":
        name = request.form.get("name", "").strip()
        if USER_NAME.fullmatch(name):
            session["user"] = name
            return redirect(url_for("index"))
        error = "A name is 1 to 32 letters, digits, '-' or '_'."
    return render_template("login.html", error=error), 400 if error else 200


@app.post("/logout")
def logout() -> Any:
    session.clear()
    return redirect(url_for("login"))


@app.post("/push/token")
@login_required
def push_token() -> Any:
    return jsonify(token=user_token(APIKEY, SECRET, session["user"], ttl=TOKEN_TTL))


@app.post("/push/auth")
@login_required
def push_channel_token() -> Any:
    user = session["user"]
    channel = (request.get_json(silent=True) or {}).get("channel", "")
    if not isinstance(channel, str) or not may_read(user, channel):
        abort(403)
    return jsonify(token=channel_token(APIKEY, SECRET, user, channel, ttl=TOKEN_TTL))


# [/tokens]


@app.get("/")
@login_required
def index() -> str:
    user = session["user"]
    return render_template(
        "index.html",
        user=user,
        channels=[NEWS, inbox(user)],
        server=THUNDERPUSH_PUBLIC,
        key=APIKEY,
    )


@app.get("/sockjs.min.js")
def sockjs() -> Any:
    if not SOCKJS_FILE.is_file():
        abort(404, f"{SOCKJS_FILE} is missing: see examples/flask/README.md")
    return send_file(SOCKJS_FILE, mimetype="text/javascript")


@app.post("/publish")
@login_required
def publish() -> Any:
    """Sends ``text`` to ``news``, or to the inbox of the user named in ``to``."""
    body = request.get_json(silent=True) or {}
    text, to = str(body.get("text", "")), str(body.get("to", ""))
    if not text:
        return jsonify(error="Nothing to send."), 400
    if to and not USER_NAME.fullmatch(to):
        return jsonify(error="No such user name."), 400
    channel = inbox(to) if to else NEWS
    try:
        with Client(THUNDERPUSH_URL, APIKEY, SECRET) as client:
            delivered = client.publish(channel, {"from": session["user"], "text": text})
    except ThunderpushError as error:  # the server's own words, e.g. a wrong secret
        app.logger.warning("Publishing to %s failed: %s", channel, error)
        return jsonify(error=str(error)), 502
    return jsonify(channel=channel, delivered=delivered)
