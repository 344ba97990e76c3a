"""Where settings come from: the TOML file, THUNDERPUSH_* variables, flags (rising priority)."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
from dataclasses import replace

import pytest

from thunderpush.cluster.node import Node
from thunderpush.config import AppConfig, Config, ConfigError, declared_apps
from thunderpush.core.apps import options_of
from thunderpush.core.retention import Keep
from thunderpush.server.cli import load
from thunderpush.server.reload import APP_OPTIONS, reload_settings
from thunderpush.settings import MASK, masked_url, tomllib

from .support import KEY


@pytest.fixture
def config_file(tmp_path):
    """Writes a configuration file and returns its path."""
    path = tmp_path / "thunderpush.toml"

    def write(text: str) -> str:
        path.write_text(text)
        return str(path)

    return write


def test_flags_override_the_environment_which_overrides_the_file(config_file):
    path = config_file("port = 7001\nmax_connections = 10\nhead_timeout = 3.5\n")
    environ = {"THUNDERPUSH_PORT": "7002", "THUNDERPUSH_MAX_CONNECTIONS": "20"}
    config, _ = load(["--config", path, "-p", "7003", "k", "s"], environ)
    assert (config.port, config.max_connections, config.head_timeout) == (7003, 20, 3.5)
    config, _ = load(["--config", path, "k", "s"], environ)
    assert (config.port, config.max_connections) == (7002, 20)
    config, _ = load(["--config", path, "k", "s"], {})
    assert (config.port, config.max_connections, config.config_file) == (7001, 10, path)
    config, _ = load(["k", "s"], {})
    assert config == Config(apikey="k", apisecret="s")


def test_the_environment_gives_the_key_secret_and_yes_no_settings(config_file):
    environ = {
        "THUNDERPUSH_APIKEY": "k",
        "THUNDERPUSH_APISECRET": "s",
        "THUNDERPUSH_REQUIRE_SIGNATURE": "yes",
        "THUNDERPUSH_ALLOWED_ORIGINS": "https://a.example,https://b.example",
        "THUNDERPUSH_CONFIG": config_file("log_format = 'json'\n"),
        "THUNDERPUSH_UNRELATED": "left alone",
    }
    config, _ = load([], environ)
    assert (config.apikey, config.apisecret, config.require_signature) == ("k", "s", True)
    assert config.allowed_origins == ("https://a.example", "https://b.example")
    assert config.log_format == "json"


def test_the_file_declares_apps_and_the_positional_app_comes_first(config_file):
    path = config_file(
        "require_signature = true\n"
        '[[apps]]\nkey = "a"\nsecret = "sa"\n'
        '[[apps]]\nkey = "b"\nsecret = "sb"\nrequire_signature = false\n'
    )
    config, _ = load(["--config", path], {})
    assert config.apps == (AppConfig("a", "sa"), AppConfig("b", "sb", False))
    assert [(app.key, app.require_signature) for app in declared_apps(config)] == [
        ("a", True),
        ("b", False),
    ]
    config, _ = load(["--config", path, "k", "s"], {})
    assert [app.key for app in declared_apps(config)] == ["k", "a", "b"]


def test_history_and_webhooks_are_set_for_every_app_or_per_app_and_prefix(config_file):
    path = config_file(
        "history_size = 5\nhistory_ttl = 60\nwebhook_url = 'http://127.0.0.1:9/all'\n"
        "[[history]]\nprefix = 'chat-'\nsize = 100\n"
        "[[apps]]\nkey = 'a'\nsecret = 'sa'\nhistory_size = 10\n"
        "webhook_url = 'https://hooks.example/a'\n"
        "[[apps.history]]\nprefix = 'chat-vip-'\nsize = 0\n"
        "[[apps.history]]\nprefix = 'orders-'\nsize = 50\nttl = 600\n"
    )
    config, _ = load(["--config", path, "k", "s"], {})
    first, second = declared_apps(config)
    assert (first.webhook_url, second.webhook_url) == (
        "http://127.0.0.1:9/all",
        "https://hooks.example/a",
    )
    server_wide, own = options_of(first)["history"], options_of(second)["history"]
    assert (server_wide.keep("news"), server_wide.keep("chat-1")) == (Keep(5, 60), Keep(100, 300))
    assert own.keep("news") == Keep(10, 60)
    assert own.keep("orders-1") == Keep(50, 600)
    assert own.keep("chat-1") == Keep(100, 300)  # the server's rule, after the app's
    assert own.keep("chat-vip-1") is None  # the longer prefix wins: no history
    config, _ = load(["k", "s"], {})
    assert not options_of(declared_apps(config)[0])["history"].enabled


@pytest.mark.parametrize(
    "text, environ, argv, message",
    [
        ("prot = 1\n", {}, [], "thunderpush.toml: unknown setting 'prot'"),
        ("port = 99999\n", {}, [], "thunderpush.toml: port: not a port (0 to 65535): '99999'"),
        ("port = true\n", {}, [], "thunderpush.toml: port: not a valid value: True"),
        ("verbose = 'yes'\n", {}, [], "thunderpush.toml: verbose: not true or false: 'yes'"),
        ("log_format = 'xml'\n", {}, [], "log_format: not one of text, json: 'xml'"),
        ("port = \n", {}, [], "thunderpush.toml is not valid TOML"),
        ("", {"THUNDERPUSH_PORT": "-5"}, [], "THUNDERPUSH_PORT: not a port"),
        ("", {"THUNDERPUSH_VERBOSE": "maybe"}, [], "THUNDERPUSH_VERBOSE: not a yes or no"),
        ("", {"THUNDERPUSH_APISECRET": " "}, ["k"], "the secret must not be empty"),
        ("", {}, ["-p", "-5"], "argument -p/--port: not a port (0 to 65535): '-5'"),
        ("", {}, [], "no app: give the client key and secret"),
        ("[[apps]]\nkey = 'a'\n", {}, [], "app 1: needs a key and a secret"),
        ("[[apps]]\nkey = 'a'\nsecret = ''\n", {}, [], "app 1: the secret must not be empty"),
        ("[[apps]]\nkey='a'\nsecret='s'\nport=1\n", {}, [], "app 1: unknown setting 'port'"),
        ("apps = 3\n", {}, [], "apps must be [[apps]] tables"),
        ("history_size = -1\n", {}, [], "history_size: not a whole number >= 0: '-1'"),
        ("webhook_url = 'ftp://x'\n", {}, [], "webhook_url: not an http or https URL"),
        ("[[history]]\nsize = 1\n", {}, [], "history 1: needs a prefix"),
        ("[[history]]\nprefix = 'a'\nsize = -2\n", {}, [], "history 1: size: not a whole"),
        ("[[history]]\nprefix='a'\nsize=1\nttl=0\n", {}, [], "ttl: not a positive number"),
        ("[[history]]\nprefix='a'\nsize=1\nkeep=1\n", {}, [], "unknown setting 'keep'"),
        (
            "[[apps]]\nkey='a'\nsecret='s'\nhistory_ttl=-1\n",
            {},
            [],
            "app 1: history_ttl: not a positive number of seconds",
        ),
    ],
)
def test_every_mistake_names_its_source(config_file, text, environ, argv, message):
    path = config_file(text)
    with pytest.raises(ConfigError) as error:
        load(["--config", path, *argv], environ)
    assert message in str(error.value)


def test_an_app_declared_twice_is_refused(config_file):
    path = config_file("[[apps]]\nkey = 'k'\nsecret = 'other'\n")
    config, _ = load(["--config", path, "k", "s"], {})
    with pytest.raises(ConfigError, match="the app k is declared twice"):
        declared_apps(config)


def run_command(*argv: str, **environ: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "thunderpush", *argv],
        capture_output=True,
        text=True,
        timeout=30,
        env={"PATH": "/usr/bin:/bin", **environ},
    )


@pytest.mark.slow
def test_a_missing_file_is_one_line_and_status_2(tmp_path):
    result = run_command("--config", str(tmp_path / "none.toml"), "k", "s")
    assert result.returncode == 2
    assert result.stderr == (
        f"thunderpush: error: cannot read the configuration file {tmp_path / 'none.toml'}: "
        "No such file or directory\n"
    )


@pytest.mark.slow
def test_print_config_shows_the_merged_settings_with_secrets_masked(config_file):
    path = config_file(
        'redis_url = "redis://:redis-password@127.0.0.1:6379/0"\nport = 7001\n'
        '[[apps]]\nkey = "a"\nsecret = "app-a-secret"\n'
    )
    result = run_command(
        "--config", path, "--print-config", "-p", "7003", "k", THUNDERPUSH_APISECRET="top-secret"
    )
    assert result.returncode == 0, result.stderr
    for secret in ("top-secret", "app-a-secret", "redis-password"):
        assert secret not in result.stdout
    shown = tomllib.loads(result.stdout)  # the standard library's, or tomli before 3.11
    assert shown["port"] == 7003
    assert (shown["apikey"], shown["apisecret"]) == ("k", MASK)
    assert shown["apps"] == [{"key": "a", "secret": MASK}]
    assert shown["redis_url"] == [f"redis://:{MASK}@127.0.0.1:6379/0"]
    # What it prints is a configuration file the server reads (once the secrets are put back).
    config_file(result.stdout.replace(MASK, "restored"))
    assert load(["--config", path], {})[0].port == 7003


def test_a_redis_password_never_reaches_the_log():
    assert masked_url("redis://user:pw@host:1/0") == f"redis://user:{MASK}@host:1/0"
    assert masked_url("redis://host:1/0") == "redis://host:1/0"
    assert "pw" not in Node(["redis://:pw@127.0.0.1:1/0"], 30).shown_urls[0]
    hostile = "redis://user:pa:ss@w@rd@127.0.0.1:1/0"
    assert Node([hostile], 30).shown_urls == [f"redis://user:{MASK}@127.0.0.1:1/0"]


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        # The password ends at the authority's last "@", as redis-py reads it.
        ("redis://user:pa:ss@w@rd@host:6379/0", "redis://user:*@host:6379/0"),
        ("redis://:pa%40ss%3A@host/0", "redis://:*@host/0"),
        (
            "rediss://u:p@[::1]:6379/0?ssl_cert_reqs=none",
            "rediss://u:*@[::1]:6379/0?ssl_cert_reqs=*",
        ),
        # Every query value, a bare query item and a fragment.
        ("https://h/hook?token=abc&x=1", "https://h/hook?token=*&x=*"),
        ("https://h/hook?abc&&x=", "https://h/hook?*&&x=*"),
        ("https://h:8443/hook#abc", "https://h:8443/hook#*"),
        ("unix:///run/redis.sock?password=abc&db=0", "unix:///run/redis.sock?password=*&db=*"),
        # A user part alone is the credential; one that a "/", "?" or "#" cut is masked
        # up to the last "@".
        ("https://abc@h/hook", "https://*@h/hook"),
        ("redis://u:pa/ss@host/0", "redis://*@host/0"),
        ("redis://u:pa?ss@host/0", "redis://*@host/0"),
        ("redis://u:pa#ss@host/0", "redis://*@host/0"),
        ("redis://u:pa\nss@host/0", "redis://u:*@host/0"),
        # Nothing to hide, or nothing readable.
        ("redis://host:6379/0", "redis://host:6379/0"),
        ("http://[::1/hook?token=abc", "*"),
    ],
)
def test_masking_parses_the_url_and_hides_the_password_and_every_query_value(url, shown):
    assert masked_url(url) == shown.replace("*", MASK)


@pytest.mark.slow
def test_print_config_and_a_wrong_url_never_show_a_password_or_a_token(config_file):
    path = config_file(
        'redis_url = "redis://user:s3:cr@e@t@127.0.0.1:6379/0"\n'
        'webhook_url = "https://hooks.example.com/in?token=t0ken&x=1"\n'
        '[[apps]]\nkey = "a"\nsecret = "sa"\nwebhook_url = "https://h/?k=appt0ken"\n'
    )
    result = run_command("--config", path, "--print-config", "k", "s")
    assert result.returncode == 0, result.stderr
    for secret in ("s3", "cr@e", "t0ken", "appt0ken"):
        assert secret not in result.stdout
    shown = tomllib.loads(result.stdout)
    assert shown["redis_url"] == [f"redis://user:{MASK}@127.0.0.1:6379/0"]
    assert shown["webhook_url"] == f"https://hooks.example.com/in?token={MASK}&x={MASK}"
    assert shown["apps"][0]["webhook_url"] == f"https://h/?k={MASK}"
    result = run_command(
        "--webhook-url", "ftp://u:s3cret@h/?token=t0ken", "--print-config", "k", "s"
    )
    assert result.returncode == 2
    assert "not an http or https URL" in result.stderr
    assert "s3cret" not in result.stderr and "t0ken" not in result.stderr


def test_app_ids_and_client_events_are_set_per_app_and_ids_are_unique(config_file):
    path = config_file(
        "client_events = true\n"
        "[[apps]]\nkey = 'a'\nsecret = 'sa'\napp_id = '42'\nclient_events = false\n"
        "[[apps]]\nkey = 'b'\nsecret = 'sb'\n"
    )
    config, _ = load(["--config", path, "--app-id", "7", "k", "s"], {})
    apps = declared_apps(config)
    assert [(app.key, app.app_id, app.client_events) for app in apps] == [
        ("k", "7", True),
        ("a", "42", False),
        ("b", None, True),
    ]
    clash = config_file("[[apps]]\nkey = 'a'\nsecret = 'sa'\napp_id = 'k'\n")
    config, _ = load(["--config", clash, "k", "s"], {})
    with pytest.raises(ConfigError, match="the app id k is declared twice"):
        declared_apps(config)


def test_the_webhook_format_is_the_servers_or_its_own_per_app_and_checked(config_file):
    path = config_file(
        "webhook_format = 'pusher'\n"
        "[[apps]]\nkey = 'a'\nsecret = 'sa'\nwebhook_format = 'thunderpush'\n"
        "[[apps]]\nkey = 'b'\nsecret = 'sb'\n"
    )
    config, _ = load(["--config", path, "k", "s"], {})
    formats = [(app.key, options_of(app)["webhook_format"]) for app in declared_apps(config)]
    assert formats == [("k", "pusher"), ("a", "thunderpush"), ("b", "pusher")]
    assert load(["k", "s"], {})[0].webhook_format == "thunderpush"
    wrong = config_file("[[apps]]\nkey = 'a'\nsecret = 'sa'\nwebhook_format = 'soketi'\n")
    with pytest.raises(ConfigError, match="webhook_format: not one of thunderpush, pusher"):
        load(["--config", wrong], {})


def test_sighup_knows_every_app_option():
    # An option that SIGHUP did not know could change in the file and be ignored
    # without a word: each is applied, or reload.py must say it waits for a restart.
    assert set(options_of(AppConfig("k", "s"))) == set(APP_OPTIONS)


def test_redis_urls_add_up_from_flags_and_replace_the_files_and_the_environments(config_file):
    """Shards: ``--redis-url`` repeated, a comma-separated THUNDERPUSH_REDIS_URL, or a
    TOML list; the flags replace what the file or the environment said."""
    a, b, c = "redis://:pa,ss@a:1/0", "rediss://b:2/0", "unix:///run/c.sock"
    path = config_file(f"redis_url = [{json.dumps(a)}, {json.dumps(b)}]\n")
    assert load(["--config", path, "k", "s"], {})[0].redis_url == (a, b)
    environ = {"THUNDERPUSH_REDIS_URL": f"{c}, {a}"}
    assert load(["--config", path, "k", "s"], environ)[0].redis_url == (c, a)
    argv = ["--config", path, "--redis-url", b, "--redis-url", f"{c},{a}", "k", "s"]
    config = load(argv, environ)[0]
    assert (config.redis_url, config.redis_cluster) == ((b, c, a), False)
    assert load(["--redis-url", a, "--redis-cluster", "k", "s"], {})[0].redis_cluster
    assert load(["k", "s"], {})[0].redis_url == ()


async def test_sighup_warns_only_about_what_differs_from_what_runs(server, caplog):
    # A setting that waits for a restart keeps its running value: changed in the
    # file, then changed back, it no longer differs from what runs.
    running = server.parts.config
    caplog.set_level(logging.INFO, logger="thunderpush")
    reload_settings(server.parts, lambda: replace(running, head_timeout=3.0, max_unsent_bytes=7))
    assert "Changed settings that need a restart: head_timeout." in caplog.text
    assert server.parts.config.head_timeout == running.head_timeout  # not applied
    assert server.parts.config.max_unsent_bytes == 7  # applied
    caplog.clear()
    reload_settings(server.parts, lambda: running)
    assert "need a restart" not in caplog.text
    assert "Reloaded: max_unsent_bytes 7 -> " in caplog.text
    assert server.parts.config == running


async def test_a_reload_names_each_app_it_changed_and_a_new_secret_its_app(server, caplog):
    running = server.parts.config
    caplog.set_level(logging.INFO, logger="thunderpush")
    reload_settings(server.parts, lambda: replace(running, apisecret="another-secret"))
    secret = next(record for record in caplog.records if "a new secret" in record.message)
    assert secret.message.startswith(f"Reloaded: app {KEY}: a new secret")
    assert secret.app == KEY  # the context field: app=... in text, "app" in JSON
    assert server.parts.apps.get(KEY).secret == "another-secret"
    assert caplog.records[-1].message == f"Configuration reloaded: 1 apps, changed: {KEY}."
    caplog.clear()
    reload_settings(server.parts, lambda: replace(running, apisecret="another-secret"))
    assert caplog.records[-1].message == "Configuration reloaded: 1 apps, none changed."
