"""The OpenAPI description: it covers the routes exactly, and the server serves it as shipped.

schemathesis (tests/test_schemathesis.py) checks that the server answers as
described; these tests check that the description and the route table name
the same operations, and that what is served is the file the package ships.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
from tornado.httpclient import AsyncHTTPClient

from thunderpush.api.actions import ROUTES

from .test_api import JSON_TYPE, assert_cors, assert_error

ROOT = Path(__file__).resolve().parent.parent
PACKAGED = ROOT / "thunderpush" / "api" / "openapi.json"
PATH = "/api/1.0.0/openapi.json"
METHODS = {"get", "post", "delete", "put", "patch", "head", "options", "trace"}


def described() -> dict:
    return json.loads(PACKAGED.read_bytes())


def template(pattern: str) -> str:
    """A route's Tornado pattern as an OpenAPI path: ``(?P<user>[^/]+)`` becomes ``{user}``."""
    return re.sub(r"\(\?P<(\w+)>\[\^/\]\+\)", r"{\1}", pattern).replace("\\.", ".")


def test_every_route_is_described_and_nothing_else():
    routes = {template(pattern): actions for pattern, actions in ROUTES}
    paths = described()["paths"]
    assert set(paths) == set(routes)
    for path, actions in routes.items():
        # OPTIONS (the CORS preflight) is answered on every route.
        assert {m for m in paths[path] if m in METHODS} == {m.lower() for m in actions} | {
            "options"
        }, path


def test_every_operation_describes_its_path_parameters():
    description = described()
    components = description["components"]["parameters"]
    for path, item in description["paths"].items():
        for method, operation in item.items():
            parameters = [
                components[p["$ref"].rsplit("/", 1)[1]] if "$ref" in p else p
                for p in operation.get("parameters", [])
            ]
            names = {p["name"] for p in parameters if p["in"] == "path"}
            assert names == set(re.findall(r"\{(\w+)\}", path)), (path, method)


def test_error_messages_are_the_apis():
    """Each error status lists only messages the API really gives."""
    from thunderpush.api import answers

    given = {
        (error.status, error.message)
        for error in vars(answers).values()
        if isinstance(error, answers.ApiError)
    }
    given |= {
        (answer.status, json.loads(answer.body)["message"])
        for answer in vars(answers).values()
        if isinstance(answer, answers.Answer) and answer.body
    }
    given |= {(400, "Bad Request"), (503, "Too many connections.")}
    text = PACKAGED.read_text(encoding="utf-8")
    documented = {
        (int(status), message)
        for messages, status in re.findall(
            r'"message": \{\s*"enum": \[([^]]*)\]\s*\},\s*"status": \{\s*"enum": \[\s*(\d+)', text
        )
        for message in json.loads(f"[{messages}]")
    }
    assert documented and documented <= given


@pytest.mark.parametrize("query", ["", "?x=1"], ids=["front door", "tornado"])
async def test_served_bytes_are_the_packaged_file_without_a_secret(server, query):
    # A query string makes the front door hand the request to Tornado's handlers.
    response = await AsyncHTTPClient().fetch(server.url + PATH + query)
    assert response.code == 200
    assert response.body == PACKAGED.read_bytes()
    assert response.headers["Content-Type"] == JSON_TYPE
    assert_cors(response)


@pytest.mark.parametrize("query", ["", "?x=1"], ids=["front door", "tornado"])
async def test_only_get_is_served(server, query):
    response = await AsyncHTTPClient().fetch(
        server.url + PATH + query, method="POST", body=b"{}", raise_error=False
    )
    assert_error(response, 405, "Method not allowed.")


@pytest.mark.slow
def test_the_description_ships_in_the_package(tmp_path):
    # Packaging does not depend on the Python or Tornado version: the main
    # suite's .venv has setuptools; tox's environments on Python 3.12 and
    # later do not.
    pytest.importorskip("setuptools")
    subprocess.run(
        [sys.executable, "setup.py", "-q", "build_py", "--build-lib", str(tmp_path)],
        cwd=ROOT,
        check=True,
        capture_output=True,
    )
    assert (tmp_path / "thunderpush" / "api" / "openapi.json").read_bytes() == PACKAGED.read_bytes()
