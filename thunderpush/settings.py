"""Where settings come from before the flags: the configuration file and the environment.

Precedence rises from the defaults, to the TOML file of ``--config``, to the
``THUNDERPUSH_*`` environment variables, to the command line's flags.  The
file and the environment hold the same settings as the flags, under their
``Config`` names (``max_connections = 100``, ``THUNDERPUSH_MAX_CONNECTIONS=100``),
checked by the same rules; the file may also declare apps::

    port = 8000
    [[history]]                 # for every app
    prefix = "chat-"
    size = 100
    [[apps]]
    key = "shop"
    secret = "..."
    require_signature = true
    history_size = 10           # and history_ttl, webhook_url
    [[apps.history]]            # for this app, before the server's
    prefix = "orders-"
    size = 50
    ttl = 600

``thunderpush.server.cli`` knows each setting's rule (its argparse option);
this module only finds the values and says where a wrong one came from.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, fields
from typing import Any
from urllib.parse import urlsplit, urlunsplit

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - the same parser, before it joined the standard library
    import tomli as tomllib

from thunderpush.config import (
    AppConfig,
    Config,
    ConfigError,
    HistoryRule,
    checked_credential,
)

ENV_PREFIX = "THUNDERPUSH_"
# The environment variable that names the file, for when flags cannot be changed.
CONFIG_VARIABLE = ENV_PREFIX + "CONFIG"
MASK = "********"

# A setting's rule: the text of a value (as a flag would give it) to the value.
Rule = Callable[[str], Any]
_TRUE, _FALSE = {"1", "true", "yes", "on"}, {"0", "false", "no", "off", ""}
_APP_FIELDS = {field.name for field in fields(AppConfig)}
_RULE_FIELDS = {field.name for field in fields(HistoryRule)}
# Settings that are tables, read by their own functions, not by a flag's rule.
TABLES = ("apps", "history")


def read_file(path: str) -> dict[str, Any]:
    """The TOML file at ``path``, or ``ConfigError`` saying what is wrong with it."""
    try:
        with open(path, "rb") as file:
            return tomllib.load(file)
    except OSError as error:
        raise ConfigError(f"cannot read the configuration file {path}: {error.strerror}") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as error:
        raise ConfigError(f"{path} is not valid TOML: {error}") from None


def flag_text(value: Any) -> str | None:
    """A file's value as the text a flag would give; None for a type no flag has."""
    if isinstance(value, list) and all(isinstance(item, str) for item in value):
        return ",".join(value)
    if isinstance(value, (str, int, float)) and not isinstance(value, bool):
        return str(value)
    return None


def boolean(text: str) -> bool:
    """``1``/``true``/``yes``/``on`` or ``0``/``false``/``no``/``off`` (any case)."""
    lowered = text.strip().lower()
    if lowered in _TRUE | _FALSE:
        return lowered in _TRUE
    raise ValueError(f"not a yes or no: {text!r}")


def _checked(rule: Rule, text: str, where: str) -> Any:
    try:
        return rule(text)
    except ValueError as error:
        raise ConfigError(f"{where}: {error}") from None


def from_file(data: Mapping[str, Any], rules: Mapping[str, Rule | None], path: str) -> dict:
    """The settings in a parsed file, by ``Config`` name; a None rule marks a yes/no setting."""
    values: dict[str, Any] = {}
    for name, value in data.items():
        where = f"{path}: {name}"
        if name in TABLES:
            continue
        if name not in rules:
            raise ConfigError(f"{path}: unknown setting {name!r}")
        rule = rules[name]
        if rule is None:
            if not isinstance(value, bool):
                raise ConfigError(f"{where}: not true or false: {value!r}")
            values[name] = value
            continue
        text = flag_text(value)
        if text is None:
            raise ConfigError(f"{where}: not a valid value: {value!r}")
        values[name] = _checked(rule, text, where)
    return values


def from_environment(environ: Mapping[str, str], rules: Mapping[str, Rule | None]) -> dict:
    """The ``THUNDERPUSH_<NAME>`` variables of known settings, by ``Config`` name.

    Others are left alone: other programs (``thunderpush-token``) share the prefix.
    """
    values = {}
    for name, rule in rules.items():
        variable = ENV_PREFIX + name.upper()
        if variable in environ:
            values[name] = _checked(rule or boolean, environ[variable], variable)
    return values


def apps_from_file(
    data: Mapping[str, Any], path: str, rules: Mapping[str, Rule | None]
) -> tuple[AppConfig, ...]:
    """The file's ``[[apps]]`` tables, each checked as the command line checks its settings."""
    apps = []
    for number, table in enumerate(_tables(data, "apps", path), 1):
        where = f"{path}: app {number}"
        _only(table, _APP_FIELDS, where)
        key, secret = table.get("key"), table.get("secret")
        if not isinstance(key, str) or not isinstance(secret, str):
            raise ConfigError(f"{where}: needs a key and a secret, as strings")
        _checked(lambda text: checked_credential("key", text), key, where)
        _checked(lambda text: checked_credential("secret", text), secret, where)
        own = {name: value for name, value in table.items() if name not in _APP_TABLE_KEYS}
        settings = from_file(own, {name: rules[name] for name in own}, where)
        history = history_from_file(table, where)
        apps.append(AppConfig(key, secret, **settings, history=history))
    return tuple(apps)


# What an ``[[apps]]`` table holds beside the server's settings of the same names.
_APP_TABLE_KEYS = {"key", "secret", "history"}


def history_from_file(data: Mapping[str, Any], path: str) -> tuple[HistoryRule, ...]:
    """The ``[[history]]`` tables of ``data`` (the file, or one app's table)."""
    rules = []
    for number, table in enumerate(_tables(data, "history", path), 1):
        where = f"{path}: history {number}"
        _only(table, _RULE_FIELDS, where)
        prefix, size, ttl = table.get("prefix"), table.get("size"), table.get("ttl", 300.0)
        if not isinstance(prefix, str) or not prefix:
            raise ConfigError(f"{where}: needs a prefix, a non-empty string")
        if isinstance(size, bool) or not isinstance(size, int) or size < 0:
            raise ConfigError(f"{where}: size: not a whole number >= 0: {size!r}")
        if isinstance(ttl, bool) or not isinstance(ttl, (int, float)) or not 0 < ttl < 1e12:
            raise ConfigError(f"{where}: ttl: not a positive number of seconds: {ttl!r}")
        rules.append(HistoryRule(prefix, size, float(ttl)))
    return tuple(rules)


def _only(table: Mapping[str, Any], known: set[str], where: str) -> None:
    """``ConfigError`` naming the first setting of ``table`` that is not ``known``."""
    unknown = set(table) - known
    if unknown:
        raise ConfigError(f"{where}: unknown setting {sorted(unknown)[0]!r}")


def _tables(data: Mapping[str, Any], name: str, path: str) -> list[dict[str, Any]]:
    tables = data.get(name, [])
    if not isinstance(tables, list) or not all(isinstance(table, dict) for table in tables):
        raise ConfigError(f"{path}: {name} must be [[{name}]] tables")
    return tables


def masked_url(url: str) -> str:
    """``url`` as logs and listings show it: no password, no query value, no fragment.

    ``redis://user:pa:ss@w@rd@host:6379/0`` is ``redis://user:********@host:6379/0``:
    parsed by ``urllib.parse`` as redis-py parses it (the user part ends at the
    authority's last ``@``, the user name at its first ``:``), so the password
    is masked whole whatever it holds (``:``, ``@``, ``%40``).  A user part
    without a password is masked whole (``https://<token>@host``: it is the
    credential); when a ``/``, ``?`` or ``#`` cut the user part off the
    authority (an ``@`` follows it), everything up to the last ``@`` is.
    ``https://h/hook?token=abc&x=1`` is ``https://h/hook?token=********&x=********``:
    any query value may be a token, and a query item without ``=`` is masked
    whole.  What ``urllib.parse`` cannot read is masked whole.
    """
    try:
        parts = urlsplit(url)
        after = urlunsplit(("", "", parts.path, parts.query, parts.fragment))
        if parts.netloc and "@" not in parts.netloc and "@" in after:
            parts = urlsplit(f"{parts.scheme}://{MASK}@{after[after.rindex('@') + 1 :]}")
    except ValueError:
        return MASK
    netloc = parts.netloc
    if "@" in netloc:
        userinfo, _, host = netloc.rpartition("@")
        user, colon, _ = userinfo.partition(":")
        netloc = f"{user}:{MASK}@{host}" if colon else f"{MASK}@{host}"
    shown = f"{parts.scheme}:" if parts.scheme else ""
    if netloc or url[len(shown) :].startswith("//"):
        shown += "//" + netloc
    shown += parts.path
    if parts.query:
        shown += "?" + "&".join(_masked_item(item) for item in parts.query.split("&"))
    return shown + ("#" + MASK if parts.fragment else "")


def _masked_item(item: str) -> str:
    """``key=value`` as ``key=********``; a bare item (it may be a token) masked whole."""
    key, equals, _ = item.partition("=")
    if equals:
        return f"{key}={MASK}"
    return MASK if item else item


def masked(config: Config, names: Iterable[str]) -> dict[str, Any]:
    """The settings ``names`` of ``config``, and its tables, with every secret masked
    (``--print-config``)."""
    every = asdict(config)
    shown = {name: every[name] for name in names}
    if config.apisecret:
        shown["apisecret"] = MASK
    if shown.get("webhook_url"):
        shown["webhook_url"] = masked_url(shown["webhook_url"])
    if "redis_url" in shown:
        shown["redis_url"] = [masked_url(url) for url in shown["redis_url"]] or None
    shown["history"] = every["history"]
    shown["apps"] = [
        {
            **app,
            "secret": MASK,
            "webhook_url": app["webhook_url"] and masked_url(app["webhook_url"]),
        }
        for app in every["apps"]
    ]
    return shown


def toml(settings: Mapping[str, Any]) -> str:
    """``settings`` as a TOML file (unset values as comments: TOML has no null)."""
    lines, tables = [], []
    for name, value in settings.items():
        if name in TABLES:
            tables += [(name, table) for table in value]
        elif value is None:
            lines.append(f"# {name} is not set")
        else:
            lines.append(f"{name} = {_toml_value(value)}")
    for name, table in tables:
        lines += _toml_table(name, table)
    return "\n".join(lines) + "\n"


def _toml_table(name: str, table: Mapping[str, Any]) -> list[str]:
    """``[[name]]`` and its values, then its own tables (``[[apps.history]]``)."""
    lines = ["", f"[[{name}]]"]
    inner = []
    for key, value in table.items():
        if key in TABLES:
            inner += [(f"{name}.{key}", item) for item in value]
        elif value is not None:
            lines.append(f"{key} = {_toml_value(value)}")
    for key, item in inner:
        lines += _toml_table(key, item)
    return lines


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        # TOML's basic strings take the escapes json.dumps writes.
        return json.dumps(value)
    return "[" + ", ".join(_toml_value(item) for item in value) + "]"
