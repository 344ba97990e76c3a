"""A tiny run of every ``thunderpush-bench`` scenario, so that the tool keeps working.

Not a performance test: nothing here depends on speed.  It checks that the
load generator talks the wire protocol (handshake, SockJS framing, the API),
counts every delivery and reports the figures the benchmark harness reads.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import types
import urllib.request
from typing import Any

import pytest

from thunderpush_bench import cli
from thunderpush_bench.api_client import api_count
from thunderpush_bench.clients import SockJSClient
from thunderpush_bench.listen import LISTEN_MARK
from thunderpush_bench.measure import Tally
from thunderpush_bench.wire import accept_key

from .support import KEY, SECRET
from .support.cluster import cluster_nodes
from .support.processes import bad_log_lines, start_server_process
from .support.served import serving

pytestmark = pytest.mark.slow

BENCH = (sys.executable, "-m", "thunderpush_bench")


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    running = start_server_process(tmp_path_factory.mktemp("bench"))
    yield running
    running.stop()


def bench_command(servers, *args: str) -> list[str]:
    """``thunderpush-bench`` against ``servers`` (one, or a cluster's nodes), CPU of each."""
    command = list(BENCH)
    for server in servers:
        command += ["--url", server.url, "--server-pid", str(server.proc.pid)]
    command += ["--key", KEY, "--secret", SECRET, "--json", "--quiet", "--settle", "0"]
    return [*command, "--timeout", "60", *args]


def run_bench(server, *args: str, nodes=()) -> dict[str, Any]:
    """Runs ``thunderpush-bench`` against ``server`` (or ``nodes``); returns its JSON report."""
    servers = list(nodes) or [server]
    command = bench_command(servers, *args)
    result = subprocess.run(command, capture_output=True, text=True, timeout=90)
    assert result.returncode == 0, result.stdout + result.stderr
    report = json.loads(result.stdout)
    assert report["ok"], report
    for running in servers:
        assert "Traceback" not in running.log() and " ERROR " not in running.log()
    assert report["warnings"] == [] or all("bench used" in w for w in report["warnings"])
    return report


def check_setup(report: dict[str, Any], connections: int) -> None:
    setup = report["setup"]
    assert setup["opened"] == connections
    assert setup["verified"] is True
    assert setup["connections_per_s"] > 0
    assert "server_cpu_s" in setup
    assert set(report["memory"]) == {"rss_before_kib", "rss_after_kib", "rss_per_connection_kib"}


def check_deliveries(phase: dict[str, Any], published: int, delivered: int) -> None:
    assert phase["published"] == published
    assert phase["failed"] == 0
    assert phase["expected"] == phase["api_count"] == delivered
    assert phase["delivered"] == delivered
    assert phase["lost"] == 0
    assert phase["deliveries_per_s"] > 0
    assert phase["latency_ms"]["samples"] > 0
    assert {"p50", "p95", "p99", "max"} <= phase["latency_ms"].keys()
    assert "server_cpu_us_per_delivery" in phase
    assert {"bench_cpu_s", "bench_cpu_percent", "server_cpu_s", "seconds"} <= phase.keys()


@pytest.mark.parametrize("client", ["sockjs", "pusher"])
def test_fanout(server, client):
    """Pusher clients: websockets at /app/<key>, subscribed, every event counted."""
    report = run_bench(
        server,
        *("--scenario", "fanout", "--client", client, "--connections", "20", "--messages", "50"),
        *("--rate", "100", "--rate-messages", "5", "--sample", "4"),  # most counted, some timed
    )
    assert report["scenario"] == "fanout" and report["client"] == client
    check_setup(report, 20)
    check_deliveries(report["full"], 50, 20 * 50)
    check_deliveries(report["rate"], 5, 20 * 5)
    assert report["full"]["latency_ms"]["samples"] == 4 * 50
    assert report["rate"]["rate_target"] == 100


def test_users(server):
    report = run_bench(
        server,
        *("--scenario", "users", "--connections", "10", "--messages", "40", "--rate", "0"),
    )
    check_setup(report, 10)
    check_deliveries(report["full"], 40, 40)
    assert "rate" not in report


def test_publish(server):
    report = run_bench(server, "--scenario", "publish", "--messages", "100", "--concurrency", "3")
    full = report["full"]
    assert full["published"] == 100
    assert full["failed"] == 0
    assert full["publish_per_s"] > 0
    assert full["request_ms"]["samples"] == 100
    assert "server_cpu_us_per_request" in full
    assert "setup" not in report


def test_idle(server):
    report = run_bench(server, "--scenario", "idle", "--connections", "30", "--idle-seconds", "0.2")
    check_setup(report, 30)
    assert report["idle"]["unexpected_closes"] == 0
    assert "server_cpu_percent" in report["idle"]


async def test_pusher_clients_answer_the_servers_pings():
    """A silent Pusher client is pinged, and closed with 4201 if it does not answer."""
    async with serving({}) as running:
        running.router.service.settings.heartbeat_delay = 0.05
        running.parts.pusher.activity_timeout, running.parts.pusher.pong_timeout = 0.1, 0.3
        # The server is in this process: no --server-pid, so no CPU or memory figures.
        command = [*BENCH, "--url", running.url, "--key", KEY, "--secret", SECRET, "--json"]
        command += ["--quiet", "--timeout", "60", "--scenario", "idle", "--client", "pusher"]
        command += ["--connections", "6", "--sample", "2", "--idle-seconds", "1"]
        bench = await asyncio.create_subprocess_exec(
            *command, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
        )
        out, err = await asyncio.wait_for(bench.communicate(), 60)
    report = json.loads(out)
    assert report["ok"], (report, err)
    assert report["setup"]["opened"] == 6
    assert report["close_codes"] == {} and report["errors"] == {}
    assert report["idle"]["unexpected_closes"] == 0


def test_channels(server):
    """Each connection alone in its own channel; each publish reaches exactly one."""
    report = run_bench(
        server,
        *("--scenario", "channels", "--connections", "20", "--messages", "60", "--rate", "0"),
        *("--sample", "20"),  # every delivery timed: each channel's own subscriber got it
    )
    check_setup(report, 20)
    check_deliveries(report["full"], 60, 60)
    assert report["full"]["latency_ms"]["samples"] == 60


def test_channels_are_picked_at_random_among_the_open_connections():
    """Publishes spread over the channels, none to a connection that did not open."""
    from thunderpush_bench.scenarios import Bench

    bench = Bench(cli.parse_args(["--scenario", "channels", "-n", "50"]))
    bench.clients = [types.SimpleNamespace(index=index) for index in range(0, 50, 2)]
    targets = [bench.target(seq) for seq in range(500)]
    assert {expected for _, expected in targets} == {1}
    picked = {path for path, _ in targets}
    assert picked == {f"channels/{bench.channel}-{index}/" for index in range(0, 50, 2)}
    assert (
        bench.hello(7)
        == json.dumps(
            [f"CONNECT {bench.user_prefix}7:key", f"SUBSCRIBE {bench.channel}-7"]
        ).encode()
    )


def test_cluster_channels_and_a_bystander_node(tmp_path, fresh_redis):
    """One-subscriber channels over two nodes; then all on the first, the second a
    bystander whose CPU is reported apart from the server's."""
    with cluster_nodes(tmp_path, fresh_redis, 2) as nodes:
        redis_pid = ("--redis-pid", str(fresh_redis.proc.pid))
        options = ("--scenario", "channels", "-n", "20", "-m", "200", "--rate", "0", *redis_pid)
        spread = run_bench(None, *options, nodes=nodes)
        assert spread["per_url"] == [10, 10]
        check_setup(spread, 20)
        check_deliveries(spread["full"], 200, 200)
        assert "redis_cpu_us_per_delivery" in spread["full"]
        assert "bystander_cpu_s" not in spread["full"]
        bystander = ("--bystander-pid", str(nodes[1].proc.pid))
        alone = run_bench(nodes[0], *options, *bystander)
        assert alone["per_url"] == [20]
        check_deliveries(alone["full"], 200, 200)
        full = alone["full"]
        assert full["bystander_cpu_s"] >= 0 and full["bystander_cpu_us_per_delivery"] >= 0
        assert {"bystander_cpu_percent", "server_cpu_s", "redis_cpu_s"} <= full.keys()


def test_listen_processes_share_one_channel_and_count_one_publish(server):
    """Two generator processes on one channel; a publish from outside reaches both."""
    channel = f"listen-{os.urandom(3).hex()}"
    command = bench_command([server], "--scenario", "listen", "--channel", channel)
    command += ["--sample", "0", "--idle-seconds", "30", "--drain", "2"]
    procs = [
        subprocess.Popen([*command, "-n", str(n)], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        for n in (7, 5)
    ]
    try:
        for proc in procs:
            assert LISTEN_MARK.encode() in proc.stderr.readline()  # -q: only the mark
        request = urllib.request.Request(
            f"{server.url}/api/1.0.0/{KEY}/channels/{channel}/",
            data=b'{"hello": 1}',
            headers={"X-Thunder-Secret-Key": SECRET},
        )
        with urllib.request.urlopen(request, timeout=10) as answer:
            assert json.loads(answer.read()) == {"count": 12}
        reports = [json.loads(proc.communicate(timeout=60)[0]) for proc in procs]
    finally:
        for proc in procs:
            proc.kill()
            proc.wait()
    for report, n in zip(reports, (7, 5), strict=True):
        assert report["ok"], report
        listen = report["listen"]
        assert listen["connections"] == listen["expected"] == listen["delivered"] == n
        assert listen["lost"] == 0
        assert (
            listen["last_open_at"] <= listen["opened_at"] <= listen["first_at"] <= listen["last_at"]
        )


def test_hundred_k_harness_at_forty(tmp_path):
    """bench/hundred_k.py end to end, tiny: workers, generators over the ports, one publish."""
    command = [sys.executable, "-m", "bench.hundred_k", "--connections", "40", "--workers", "2"]
    # --settle: a moment for the workers to write the subscriptions they confirmed to
    # Redis, which the publish answer counts (a loaded CI machine lags behind).
    command += ["--processes", "3", "--settle", "2", "--timeout", "60"]
    command += ["--output", str(tmp_path / "figures.json")]
    result = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    figures = json.loads((tmp_path / "figures.json").read_text())
    assert figures["ok"] and figures["opened"] == figures["delivered"] == 40
    assert figures["publish_answer"] == '{"count": 40}'
    assert len(figures["fds"]) == 2 and figures["last_delivery_ms"] > 0
    assert "| Connections asked for / opened / got the publish | 40 / 40 / 40 |" in result.stdout


def test_compare_against_nchan_quick(tmp_path):
    """bench/compare.py --peer nchan --quick end to end: every scenario, the reconnect storm
    included, against ours and nginx + Nchan; every run ok, every figure in the table."""
    from bench import nchan  # noqa: PLC0415 (the skip reason first)

    if nchan.missing():
        pytest.skip(f"nginx + Nchan cannot run here: {nchan.missing()}")
    command = [sys.executable, "bench/compare.py", "--peer", "nchan", "--quick", "--rounds", "1"]
    command += ["--output", str(tmp_path / "raw.json")]
    result = subprocess.run(
        command, cwd=nchan.CONF.parent.parent, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stdout + result.stderr
    runs = json.loads((tmp_path / "raw.json").read_text())["runs"]
    assert [(run["scenario"], run["server"]) for run in runs] == [
        (scenario.key, server) for scenario in nchan.SCENARIOS for server in ("ours", "nchan")
    ]
    assert all(run["report"]["ok"] for run in runs)
    storms = [run["report"]["storm"] for run in runs if run["scenario"] == "storm-10000"]
    assert [storm["subscribed"] for storm in storms] == [2000, 2000]
    assert "| figure | ours (median) | nchan (median) | ours/nchan | issue 19 goal | met |" in (
        result.stdout
    )
    for figure in nchan.FIGURES:
        label = figure.label.format(n=f"{2000 if 'idle' in figure.scenario else 500:,}")
        assert f"| {label.split(',')[0]}" in result.stdout, label


def test_nchans_publisher_answer_counts_its_subscribers():
    answer = b'{"messages": 1, "requested": -1, "subscribers": 3, "last_message_id": "1:0" }'
    assert api_count(answer) == 3
    assert api_count(b'{"count": 7}') == 7


def test_pusher_clients_only_subscribe():
    """Pusher clients have no user to send to: only fanout and idle take them."""
    result = subprocess.run(
        [*BENCH, "--scenario", "users", "--client", "pusher"], capture_output=True, text=True
    )
    assert result.returncode == 2
    assert "--client pusher: only --scenario fanout or idle" in result.stderr


def test_cluster_fanout_and_publish_over_both_nodes(tmp_path, fresh_redis):
    """Connections and publishes spread over two nodes on Redis; CPU of both, Redis's apart."""
    with cluster_nodes(tmp_path, fresh_redis, 2) as nodes:
        redis_pid = ("--redis-pid", str(fresh_redis.proc.pid))
        report = run_bench(
            None,
            *("--scenario", "fanout", "--connections", "20", "--messages", "30", "-c", "4"),
            *("--rate", "100", "--rate-messages", "5", *redis_pid),
            nodes=nodes,
        )
        assert report["url"] == f"{nodes[0].url} {nodes[1].url}"
        assert report["per_url"] == [10, 10]
        check_setup(report, 20)
        check_deliveries(report["full"], 30, 20 * 30)
        check_deliveries(report["rate"], 5, 20 * 5)
        assert "redis_cpu_us_per_delivery" in report["full"]
        publish = run_bench(
            None, "--scenario", "publish", "--messages", "100", *redis_pid, nodes=nodes
        )
        assert publish["full"]["published"] == 100
        assert {"server_cpu_us_per_request", "redis_cpu_us_per_request"} <= publish["full"].keys()


def test_rolling_restart_moves_clients_and_counts_what_they_missed(tmp_path, fresh_redis):
    """One node of two stops under load: its clients reopen on the other, none gets a
    message twice, the others lose nothing, and the report says what the movers missed."""
    from bench.rolling import run_rolling

    # The stopped node closes its sessions over the drain time: short, so that
    # every one of them moves while the 2 s of publishing last.
    drain = ("--drain-seconds", "0.5")
    with cluster_nodes(tmp_path, fresh_redis, 2, *drain) as nodes:

        def restart() -> None:
            assert nodes[1].stop() == 0
            assert not bad_log_lines(nodes[1])
            nodes[1] = start_server_process(
                tmp_path, "--redis-url", fresh_redis.url, *drain, port=nodes[1].port
            )

        command = bench_command(
            nodes, "--scenario", "rolling", "-n", "40", "--rate", "50", "--rate-messages", "100",
            "--concurrency", "4",
        )  # fmt: skip
        report = run_rolling(command, restart, delay=0.3, timeout=90)
        # After the restart, the restarted node takes new sessions again.
        assert report["restarted"] is True
        # What went wrong, in full: pytest cuts a long report short.
        assert report["ok"], (
            report.get("warnings"),
            report.get("rolling"),
            report.get("close_codes"),
        )
        rolling = report["rolling"]
        assert rolling["published"] == 100 and rolling["failed"] == 0
        assert rolling["moved"] == rolling["reopened"] == 20  # the second node's half
        assert rolling["move_failed"] == 0
        assert rolling["lost"] == 0 and rolling["duplicates"] == 0
        # What the sequence numbers say was missed is what the wire did not deliver.
        assert rolling["seen_unpublished"] == 0 and rolling["consistent"] is True
        assert rolling["delivered"] == 100 * 40 - rolling["missed"]
        assert rolling["missed"] <= 20 * rolling["missed_max"]
        # A mover misses what was published while it moved, give or take the 4
        # publishes in flight and the stopping node's last bus messages.
        assert rolling["missed_max"] <= rolling["published_while_moving"] + 10
        assert rolling["publish_per_s"] >= 0.9 * 50  # the rate asked for, held through the move
        assert rolling["reconnect_ms"]["samples"] == 20
        assert report["close_codes"].get("sockjs 9010") == 20
        assert report["warnings"] == []
        late = run_bench(
            None, "--scenario", "fanout", "-n", "4", "-m", "5", "--rate", "0", nodes=nodes
        )
        assert late["per_url"] == [2, 2]


def test_a_sequence_number_seen_twice_is_a_duplicate():
    """What the rolling scenario's "nothing twice" rests on: each user's seen numbers."""
    tally = Tally()
    loop = asyncio.new_event_loop()
    try:
        receiver = types.SimpleNamespace(loop=loop, remove=lambda client: None)
        seen: set[int] = set()
        client = SockJSClient(tally, receiver, "h", "/p", b"[]", False, lambda *_: None, seen=seen)
        client.sock.close()
        frame = f"a[{delivery(1)},{delivery(2)}]".encode()
        client._message(frame)
        client._message(f"a[{delivery(2)}]".encode())
    finally:
        loop.close()
    assert seen == {1, 2}
    assert tally.duplicates == 1


@pytest.mark.parametrize(
    ("wrong", "said"),
    [
        (("--secret", "wrong"), "401"),  # the API refuses it
        (("--client", "pusher", "--key", "nonesuch"), '"code":4001'),  # pusher:error at /app/<key>
    ],
    ids=["secret", "pusher-key"],
)
def test_wrong_credentials_fail_cleanly(server, wrong, said):
    command = [*BENCH, "--url", server.url, *wrong]
    command += ["--connections", "3", "--json", "--quiet"]
    result = subprocess.run(command, capture_output=True, text=True, timeout=60)
    assert result.returncode == 1
    report = json.loads(result.stdout)
    assert report["ok"] is False
    assert said in report["error"]


def test_help_names_the_command():
    result = subprocess.run([*BENCH, "--help"], capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("usage: thunderpush-bench ")


def test_console_script_entry_reads_sys_argv(monkeypatch, capsys):
    """``thunderpush-bench`` calls ``main()`` with no arguments: the options come from sys.argv."""
    monkeypatch.setattr(sys, "argv", ["thunderpush-bench", "--scenario", "nonesuch"])
    with pytest.raises(SystemExit) as exit_info:
        cli.main()
    assert exit_info.value.code == 2
    assert "invalid choice: 'nonesuch'" in capsys.readouterr().err


def test_imports_nothing_of_the_server_but_the_frame_encoder():
    """The load generator is a client: it must run without the server's dependencies."""
    # What the interpreter loads by itself (a .pth may load ``sockjs``) does not count.
    code = (
        "import json, sys; before = set(sys.modules); import thunderpush_bench.cli;"
        "print(json.dumps(sorted(set(sys.modules) - before)))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    server_side = ("thunderpush", "tornado", "sockjs", "sockjs_tornado")
    imported = [name for name in json.loads(result.stdout) if name.split(".")[0] in server_side]
    assert imported == [
        "thunderpush",
        "thunderpush.transports",
        "thunderpush.transports.websocket",
        "thunderpush.transports.websocket.frames",
    ]


class FakeSocket:
    """Stands in for the client's socket: records what the client sends."""

    def __init__(self) -> None:
        self.sent: list[bytes] = []

    def send(self, data: bytes) -> int:
        self.sent.append(data)
        return len(data)

    def close(self) -> None:
        pass


def server_frame(payload: bytes, opcode: int = 1, fin: bool = True) -> bytes:
    first = (0x80 if fin else 0) | opcode
    size = len(payload)
    if size < 126:
        return bytes((first, size)) + payload
    if size < 65536:
        return bytes((first, 126)) + size.to_bytes(2, "big") + payload
    return bytes((first, 127)) + size.to_bytes(8, "big") + payload


def delivery(seq: int, pad: int = 0) -> str:
    body = json.dumps({"seq": seq, "t": 0.0, "pad": "x" * pad})
    return json.dumps({"payload": body, "channel": "c"}, separators=(",", ":"))


async def test_frame_parser_handles_splits_fragments_and_control_frames():
    """Every way the server may cut its frames yields the same count."""
    loop = asyncio.get_running_loop()
    stream = b"HTTP/1.1 101 Switching Protocols\r\nSec-WebSocket-Accept: %s\r\n\r\n"
    stream += server_frame(b"o")
    stream += server_frame(f"a[{delivery(1)},{delivery(2)}]".encode())  # two in one frame
    stream += server_frame(b"h")
    fragmented = f"a[{delivery(3, 300)}]".encode()
    stream += server_frame(fragmented[:50], fin=False)
    stream += server_frame(b"ping!", opcode=9)  # control frames may interleave
    stream += server_frame(fragmented[50:], opcode=0)
    stream += server_frame(f"a[{delivery(4, 70000)}]".encode())  # 64-bit length
    for sampled in (False, True):
        for chunk in (1, 7, 1000, len(stream) + 100):
            tally = Tally()
            receiver = types.SimpleNamespace(loop=loop, remove=lambda client: None)
            opened: list[str | None] = []
            client = SockJSClient(
                tally,
                receiver,
                "h",
                "/p",
                b'["CONNECT u:key"]',
                sampled,
                lambda client, error, opened=opened: opened.append(error),
            )
            client.sock.close()
            client.sock = FakeSocket()
            data = stream.replace(b"%s", accept_key(client.key))
            for at in range(0, len(data), chunk):
                client.feed(data[at : at + chunk])
            assert opened == [None]
            assert tally.received == 4, (sampled, chunk)
            assert len(tally.latencies) == (4 if sampled else 0)
            sent = client.sock.sent
            assert sent[0] == client.hello and sent[1][:2] == b"\x8a\x85"  # masked pong
            client.feed(server_frame(b"\x0b\xb8bye", opcode=8))
            assert tally.close_codes == {"ws 3000": 1}
            assert tally.unexpected_closes == 1  # nobody asked this session to move
            assert client.closing and sent[2][:2] == b"\x88\x82"  # masked close reply


def test_cluster_cpu_per_message_adds_redis_where_there_is_one():
    """bench/cluster.py's "Cluster CPU per delivered message": all nodes plus Redis."""
    from bench.cluster_figures import CHANNEL_FIGURES

    total = next(figure for figure in CHANNEL_FIGURES if figure.label.startswith("Cluster CPU"))
    nodes_and_redis = {
        "full": {"server_cpu_us_per_delivery": 400.0, "redis_cpu_us_per_delivery": 60}
    }
    assert total.read(nodes_and_redis) == 460.0
    assert total.read({"full": {"server_cpu_us_per_delivery": 120.0}}) == 120.0  # one process
    assert total.read({"full": {"redis_cpu_us_per_delivery": 60}}) is None  # a failed run
