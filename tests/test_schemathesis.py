"""schemathesis against the served OpenAPI description, on a live server.

It generates requests from the description (valid ones, and invalid ones that
must be refused), sends methods the description does not list, drops the
secret, and checks every answer: no 5xx, and status, content type, headers and
body as described.  The run is bounded (``--max-examples``); its seed is
random, and printed with any failure so that it can be replayed.
"""

from __future__ import annotations

import asyncio
import json
import sys

import pytest

from .support import KEY, SECRET
from .test_openapi import PACKAGED

pytest.importorskip("schemathesis")  # not on Python 3.10, where it does not install

pytestmark = [pytest.mark.slow, pytest.mark.timeout(90)]

# Every check but use_after_free: DELETE users/<user>/ disconnects a user, it
# deletes nothing, so the user is still there to ask about afterwards.
CHECKS = "all"
EXCLUDED_CHECKS = "use_after_free"
# The stateful phase follows links between operations that create and read
# resources; the API creates none, and the links it would infer are guesses.
PHASES = "examples,coverage,fuzzing"

# Generated requests use the server's key (a random one is only ever 401,
# which the checks that drop or spoil the secret cover anyway).
CONFIG = f'[parameters]\n"path.apikey" = "{KEY}"\n'


async def test_the_server_answers_as_described(server, tmp_path):
    config = tmp_path / "schemathesis.toml"
    config.write_text(CONFIG)
    command = [
        sys.executable,
        "-c",
        "from schemathesis.cli import schemathesis; schemathesis()",
        "--config-file",
        str(config),
        "run",
        f"{server.url}/api/1.0.0/openapi.json",
        "--header",
        f"X-Thunder-Secret-Key: {SECRET}",
        "--checks",
        CHECKS,
        "--exclude-checks",
        EXCLUDED_CHECKS,
        "--phases",
        PHASES,
        "--max-examples",
        "25",
        "--workers",
        "1",
        "--generation-database",
        "none",
        "--request-timeout",
        "5",
    ]
    process = await asyncio.create_subprocess_exec(
        *command,
        cwd=tmp_path,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    output, _ = await process.communicate()
    report = output.decode(errors="replace")
    assert process.returncode == 0, report
    paths = json.loads(PACKAGED.read_bytes())["paths"].values()
    operations = sum(method != "parameters" for item in paths for method in item)
    # Every operation but the description's own GET, which schemathesis leaves out.
    assert f"Tested: {operations - 1}\n" in report, report
