"""``/dashboard``: only an app's key and secret open it, the secret never in a URL or cookie.

The page itself, in Chromium, is tests/browser/test_dashboard.py; here the
login, the session cookie and the JSON the page polls, on a real server.
"""

from __future__ import annotations

import json
import logging
import subprocess
import sys
from http.cookies import SimpleCookie
from pathlib import Path
from urllib.parse import urlencode

import pytest
from tornado.httpclient import AsyncHTTPClient, HTTPResponse

from thunderpush.config import AppConfig
from thunderpush.core.apps import Apps
from thunderpush.dashboard.guesses import Guesses
from thunderpush.dashboard.handlers import COOKIE
from thunderpush.dashboard.session import SESSION_SECONDS, check_session, make_session

from .support import KEY, SECRET
from .support.clients import WebSocketClient
from .support.served import eventually

ROOT = Path(__file__).resolve().parent.parent
STATIC = ROOT / "thunderpush" / "dashboard" / "static"

SNAPSHOT_KEYS = {
    "connections",
    "connections_by_transport",
    "users",
    "channels",
    "messages_published",
    "messages_delivered",
    "busiest_channels",
    "nodes",
    "time",
    "summed_nodes",
}


async def fetch(server, path: str, cookie: str | None = None, **kwargs) -> HTTPResponse:
    headers = {} if cookie is None else {"Cookie": f"{COOKIE}={cookie}"}
    return await AsyncHTTPClient().fetch(
        server.url + path, headers=headers, raise_error=False, follow_redirects=False, **kwargs
    )


async def log_in(server, key: str = KEY, secret: str = SECRET) -> HTTPResponse:
    body = urlencode({"key": key, "secret": secret})
    return await fetch(server, "/dashboard", method="POST", body=body)


def session_cookie(response: HTTPResponse) -> SimpleCookie:
    cookie = SimpleCookie()
    for header in response.headers.get_list("Set-Cookie"):
        cookie.load(header)
    return cookie


async def test_the_key_and_secret_open_a_session_that_holds_no_secret(server):
    response = await log_in(server)
    assert response.code == 303
    assert response.headers["Location"] == "/dashboard"
    morsel = session_cookie(response)[COOKIE]
    assert SECRET not in morsel.value
    assert morsel["httponly"] and morsel["samesite"] == "Strict"
    assert morsel["path"] == "/dashboard"
    page = await fetch(server, "/dashboard", morsel.value)
    assert page.code == 200
    assert b"/dashboard/dashboard.js" in page.body
    assert "script-src 'self'" in page.headers["Content-Security-Policy"]
    assert page.headers["Cache-Control"] == "no-store"


@pytest.mark.parametrize(
    ("key", "secret"), [(KEY, "wrong"), (KEY, ""), ("nokey", SECRET), (SECRET, KEY)]
)
async def test_a_wrong_key_or_secret_gets_the_form_again_and_no_session(server, key, secret):
    response = await log_in(server, key, secret)
    assert response.code == 403
    assert b"Wrong key or secret." in response.body
    assert b'method="post"' in response.body
    assert COOKIE not in session_cookie(response)


async def test_a_secret_in_the_url_opens_nothing(server):
    response = await fetch(server, "/dashboard?" + urlencode({"key": KEY, "secret": SECRET}))
    assert response.code == 200
    assert b'<form method="post"' in response.body
    assert b"dashboard.js" not in response.body
    assert COOKIE not in session_cookie(response)


async def test_the_data_answers_the_snapshot_to_a_session_only(server):
    cookie = session_cookie(await log_in(server))[COOKIE].value
    forged = cookie[:-1] + ("1" if cookie.endswith("0") else "0")  # one signature digit changed
    for refused in (None, "", forged, "x" + cookie, make_session(other_app())):
        response = await fetch(server, "/dashboard/data", refused)
        assert response.code == 403, refused
        assert json.loads(response.body) == {"error": "Log in at /dashboard."}

    await server.client(WebSocketClient, "alice", "news", "sport")
    await server.client(WebSocketClient, "bob", "news")
    response = await fetch(server, "/dashboard/data", cookie)
    assert response.code == 200
    assert response.headers["Content-Type"].startswith("application/json")
    data = json.loads(response.body)
    assert set(data) == SNAPSHOT_KEYS
    assert (data["connections"], data["users"], data["channels"]) == (2, 2, 2)
    assert data["busiest_channels"][0] == {"channel": "news", "connections": 2}
    assert data["nodes"] == []
    assert data["summed_nodes"] == 1


async def test_two_nodes_answer_the_clusters_figures_and_how_many_they_sum(nodes):
    # Behind a load balancer each poll may reach either node: both answer the same.
    a, b = await nodes(2)
    await a.client(WebSocketClient, "alice", "news", "sport")
    await b.client(WebSocketClient, "bob", "news")
    await b.client(WebSocketClient, "alice", "news")
    wanted = {
        "connections": 3,
        "users": 2,
        "channels": 2,
        "busiest_channels": [
            {"channel": "news", "connections": 3},
            {"channel": "sport", "connections": 1},
        ],
        "summed_nodes": 2,
        "cluster": "up",
    }

    async def figures(node) -> list[dict]:
        cookie = session_cookie(await log_in(node))[COOKIE].value
        data = json.loads((await fetch(node, "/dashboard/data", cookie)).body)
        return {name: data[name] for name in wanted}

    for node in (a, b):
        assert await eventually(lambda node=node: figures(node), wanted) == wanted


async def test_logging_out_ends_the_cookie(server):
    cookie = session_cookie(await log_in(server))[COOKIE].value
    response = await fetch(server, "/dashboard/logout", cookie, method="POST", body="")
    assert response.code == 303
    assert session_cookie(response)[COOKIE].value == ""


async def test_the_script_and_style_are_served_without_a_session(server):
    script = await fetch(server, "/dashboard/dashboard.js")
    assert script.code == 200
    assert script.headers["Content-Type"].startswith("application/javascript")
    style = await fetch(server, "/dashboard/dashboard.css")
    assert style.headers["Content-Type"].startswith("text/css")
    assert (await fetch(server, "/dashboard/other.js")).code == 404


def other_app():
    """An app with the test key but another secret, as after the secret changed."""
    return Apps().add(KEY, "another secret")


def test_a_session_expires_and_names_its_app():
    apps = Apps()
    app = apps.add("k.e:y", "secret")
    cookie = make_session(app, now=1000)
    assert check_session(apps, cookie, now=1000 + SESSION_SECONDS) is app
    assert check_session(apps, cookie, now=1001 + SESSION_SECONDS) is None
    assert check_session(Apps(), cookie, now=1000) is None  # the app is gone


@pytest.mark.parametrize(
    "cookie", ["", "a.b.c", "....", "%%%.1.2", "a" * 5000, "YQ.99999999999." + "0" * 64, "é.1.x"]
)
def test_a_cookie_of_any_other_shape_is_no_session(cookie):
    apps = Apps()
    apps.add("a", "secret")
    assert check_session(apps, cookie) is None


@pytest.mark.slow
def test_the_page_ships_in_the_package(tmp_path):
    pytest.importorskip("setuptools")  # as in test_openapi: tox's newer Pythons lack it
    subprocess.run(
        [sys.executable, "setup.py", "-q", "build_py", "--build-lib", str(tmp_path)],
        cwd=ROOT,
        check=True,
        capture_output=True,
    )
    built = tmp_path / "thunderpush" / "dashboard" / "static"
    assert sorted(path.name for path in built.iterdir()) == sorted(
        path.name for path in STATIC.iterdir()
    )


@pytest.mark.config(apps=(AppConfig("other", "other-secret"),))
async def test_an_app_sees_its_own_channel_names_only(server):
    """Two apps on one server: the dashboard of one never names the other's channels."""
    await server.client(WebSocketClient, "alice", "news")
    other = await WebSocketClient(server.url).open()
    server.clients.append(other)
    await other.send("CONNECT carol:other")
    await other.send("SUBSCRIBE secret-plans")
    await server.settled(lambda: server.parts.apps.get("other").hub.channels)
    mine = session_cookie(await log_in(server))[COOKIE].value
    theirs = session_cookie(await log_in(server, "other", "other-secret"))[COOKIE].value
    seen = {}
    for key, cookie in ((KEY, mine), ("other", theirs)):
        data = json.loads((await fetch(server, "/dashboard/data", cookie)).body)
        seen[key] = [entry["channel"] for entry in data["busiest_channels"]]
        assert data["connections"] == 2  # the server's load, for either owner
    assert seen == {KEY: ["news"], "other": ["secret-plans"]}


# -- guesses and other sites ------------------------------------------------------


def warnings_of(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.get_records("call") if r.levelno >= logging.WARNING]


async def test_five_wrong_logins_lock_the_address_out_with_429_and_one_warning(server, caplog):
    cookie = session_cookie(await log_in(server))[COOKIE].value  # a right login first
    counted = []
    authenticate = server.parts.apps.authenticate
    server.parts.apps.authenticate = lambda *given: counted.append(1) or authenticate(*given)
    codes = [(await log_in(server, KEY, f"guess {n}")).code for n in range(5)]
    assert codes == [403] * 5
    # From then on nothing is checked, not even the right secret, for a minute.
    for secret in [f"guess {n}" for n in range(5, 200)] + [SECRET]:
        response = await log_in(server, KEY, secret)
        assert response.code == 429
    assert 55 <= int(response.headers["Retry-After"]) <= 60
    assert b"Too many wrong logins: try again in " in response.body
    assert COOKIE not in session_cookie(response)
    assert len(counted) == 5
    assert warnings_of(caplog) == [
        "Dashboard: 5 wrong logins from 127.0.0.1 within 60 s; its logins are refused for 60 s."
    ]
    # A session made before goes on: only logins are refused.
    assert (await fetch(server, "/dashboard/data", cookie)).code == 200


def test_a_lockout_is_per_address_ends_after_the_window_and_the_count_is_bounded():
    now = [0.0]
    guesses = Guesses(limit=3, window=60, most=4, clock=lambda: now[0])
    assert [guesses.failed("a") for _ in range(3)] == [False, False, True]
    assert (guesses.locked("a"), guesses.locked("b")) == (60, 0)
    now[0] = 59.5
    assert guesses.locked("a") == 0.5
    now[0] = 60
    assert guesses.locked("a") == 0
    assert guesses.failed("a") is False  # counted afresh
    # Failures further apart than the window never add up.
    for moment in (200, 261, 322, 383):
        now[0] = moment
        assert guesses.failed("b") is False
    # At most ``most`` addresses are kept; the expired go first, then the oldest.
    now[0] = 400
    for address in ("c", "d", "e", "f", "g"):
        guesses.failed(address)
    assert len(guesses._failures) == 4
    assert list(guesses._failures) == ["d", "e", "f", "g"]


@pytest.mark.parametrize(
    "origin", ["https://evil.example", "null", "http://127.0.0.1:1", "http://[::1", "x"]
)
async def test_a_login_or_logout_from_another_origin_is_refused(server, origin, caplog):
    own = f"http://127.0.0.1:{server.port}"
    body = urlencode({"key": KEY, "secret": SECRET})
    headers = {"Origin": origin}
    refused = await AsyncHTTPClient().fetch(
        server.url + "/dashboard", method="POST", body=body, headers=headers, raise_error=False
    )
    assert (refused.code, json.loads(refused.body)) == (
        403,
        {"error": "Cross-site request refused."},
    )
    assert COOKIE not in session_cookie(refused)
    accepted = await AsyncHTTPClient().fetch(
        server.url + "/dashboard",
        method="POST",
        body=body,
        headers={"Origin": own},
        follow_redirects=False,
        raise_error=False,
    )
    assert accepted.code == 303
    cookie = session_cookie(accepted)[COOKIE].value
    headers["Cookie"] = f"{COOKIE}={cookie}"
    logout = await AsyncHTTPClient().fetch(
        server.url + "/dashboard/logout", method="POST", body="", headers=headers, raise_error=False
    )
    assert logout.code == 403 and COOKIE not in session_cookie(logout)
    assert (await fetch(server, "/dashboard/data", cookie)).code == 200  # still logged in
    assert len(warnings_of(caplog)) == 2  # one line per refused POST, not two
