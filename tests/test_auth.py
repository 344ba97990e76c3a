"""Tokens (``thunderpush.auth``) and the ``thunderpush-token`` command.

The command runs as ``python -m thunderpush.auth_cli`` in a subprocess: the
installed console script would run the main checkout, not this one.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import subprocess
import sys

import pytest

from thunderpush.auth import channel_token, check_channel_token, check_user_token, user_token

NOW = 1_700_000_000
KEY, SECRET = "pub", "s3cret"


def test_a_user_token_is_the_documented_hmac():
    token = user_token(KEY, SECRET, "alice", ttl=60, now=NOW)
    message = f"thunderpush-user\n{KEY}\nalice\n{NOW + 60}".encode()
    signature = hmac.new(SECRET.encode(), message, hashlib.sha256).hexdigest()
    assert token == f"{NOW + 60}.{signature}"
    assert ":" not in token and " " not in token


def test_a_channel_token_is_the_documented_hmac():
    token = channel_token(KEY, SECRET, "alice", "private-a", ttl=60, now=NOW)
    message = f"thunderpush-channel\n{KEY}\nalice\nprivate-a\n{NOW + 60}".encode()
    assert token == f"{NOW + 60}." + hmac.new(SECRET.encode(), message, "sha256").hexdigest()


def test_a_user_token_is_valid_for_its_key_user_and_lifetime_only():
    token = user_token(KEY, SECRET, "alice", ttl=60, now=NOW)
    assert check_user_token(KEY, SECRET, "alice", token, now=NOW)
    assert check_user_token(KEY, SECRET, "alice", token, now=NOW + 60)  # the last second
    assert not check_user_token(KEY, SECRET, "alice", token, now=NOW + 61)  # expired
    assert not check_user_token(KEY, SECRET, "bob", token, now=NOW)  # another user
    assert not check_user_token("other", SECRET, "alice", token, now=NOW)  # another app
    assert not check_user_token(KEY, "other", "alice", token, now=NOW)  # another secret


def test_a_channel_token_is_valid_for_its_key_user_channel_and_lifetime_only():
    token = channel_token(KEY, SECRET, "alice", "private-a", ttl=60, now=NOW)
    assert check_channel_token(KEY, SECRET, "alice", "private-a", token, now=NOW)
    assert not check_channel_token(KEY, SECRET, "alice", "private-b", token, now=NOW)
    assert not check_channel_token(KEY, SECRET, "bob", "private-a", token, now=NOW)
    assert not check_channel_token("other", SECRET, "alice", "private-a", token, now=NOW)
    assert not check_channel_token(KEY, SECRET, "alice", "private-a", token, now=NOW + 61)


def test_user_and_channel_tokens_never_pass_for_each_other():
    as_user = user_token(KEY, SECRET, "alice", now=NOW)
    as_channel = channel_token(KEY, SECRET, "alice", "private-a", now=NOW)
    assert not check_channel_token(KEY, SECRET, "alice", "private-a", as_user, now=NOW)
    assert not check_user_token(KEY, SECRET, "alice", as_channel, now=NOW)
    # Nor when the channel's name is chosen to line the fields up.
    sneaky = channel_token(KEY, SECRET, "thunderpush-user", KEY, now=NOW)
    assert not check_user_token(KEY, SECRET, "alice", sneaky, now=NOW)


def forged(token: str) -> list[str]:
    expires, signature = token.split(".")
    flipped = signature[:-1] + ("0" if signature[-1] != "0" else "1")
    return [
        f"{expires}.{flipped}",  # one hex digit changed
        f"{int(expires) + 1000}.{signature}",  # a later expiry on the old signature
        f"{expires}.{signature.upper()}",  # uppercase hex is not the format
        f"{expires}.{signature[:-2]}",
        f"{expires}.{signature}0",
        f"{expires} .{signature}",
        f"+{expires}.{signature}",
        f"0{expires}.{signature}",  # another number as text: signed as written
        f"{expires}.{signature}\n",
        f"{expires}",
        f".{signature}",
        f"{'9' * 13}.{signature}",
        f"{expires}.{signature}.{signature}",
        "\u0661" * 10 + "." + signature,  # Arabic-Indic digits are digits to str.isdigit
    ]


def test_forged_and_malformed_tokens_are_refused_without_an_exception():
    token = user_token(KEY, SECRET, "alice", now=NOW)
    channel = channel_token(KEY, SECRET, "alice", "private-a", now=NOW)
    others = ["", " ", ".", "..", "x" * 10_000, "\ud800", "1.\udfff", "é.é"]
    for bad in [*forged(token), *others, None, 12, b"1.2"]:
        assert not check_user_token(KEY, SECRET, "alice", bad, now=NOW), bad
    for bad in [*forged(channel), *others]:
        assert not check_channel_token(KEY, SECRET, "alice", "private-a", bad, now=NOW), bad


def test_fields_that_have_no_utf8_are_refused_without_an_exception():
    token = user_token(KEY, SECRET, "alice", now=NOW)
    assert not check_user_token(KEY, SECRET, "\ud800", token, now=NOW)
    assert not check_channel_token(KEY, SECRET, "alice", "\udfff", token, now=NOW)


def test_the_default_is_one_hour_from_now():
    token = user_token(KEY, SECRET, "alice")
    assert check_user_token(KEY, SECRET, "alice", token)
    assert not check_user_token(KEY, SECRET, "alice", user_token(KEY, SECRET, "alice", ttl=-1))


def run_command(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    environment = {k: v for k, v in os.environ.items() if not k.startswith("THUNDERPUSH_")}
    return subprocess.run(
        [sys.executable, "-m", "thunderpush.auth_cli", *args],
        capture_output=True,
        text=True,
        env={**environment, **env},
        timeout=30,
    )


def test_the_command_prints_a_user_token_with_the_key_and_secret_from_the_environment():
    result = run_command(
        "alice", "--ttl", "120", THUNDERPUSH_APIKEY=KEY, THUNDERPUSH_APISECRET=SECRET
    )
    assert result.returncode == 0, result.stderr
    token = result.stdout.strip()
    assert result.stdout == token + "\n"
    assert check_user_token(KEY, SECRET, "alice", token)
    expires = int(token.split(".")[0])
    assert not check_user_token(KEY, SECRET, "alice", token, now=expires + 1)
    assert check_user_token(KEY, SECRET, "alice", token, now=expires - 119)


def test_the_command_prints_a_channel_token_with_key_and_secret_as_options():
    result = run_command("alice", "--channel", "presence-room", "--key", KEY, "--secret", SECRET)
    assert result.returncode == 0, result.stderr
    token = result.stdout.strip()
    assert check_channel_token(KEY, SECRET, "alice", "presence-room", token)
    assert not check_user_token(KEY, SECRET, "alice", token)


@pytest.mark.parametrize(
    ("args", "env", "says"),
    [
        (["alice"], {"THUNDERPUSH_APISECRET": SECRET}, "no API key"),
        (["alice"], {"THUNDERPUSH_APIKEY": KEY}, "no API secret"),
        (["alice", "--secret", " "], {"THUNDERPUSH_APIKEY": KEY}, "no API secret"),
        (["a b"], {"THUNDERPUSH_APIKEY": KEY, "THUNDERPUSH_APISECRET": SECRET}, "not a user id"),
        (
            ["alice", "--channel", "bad name"],
            {"THUNDERPUSH_APIKEY": KEY, "THUNDERPUSH_APISECRET": SECRET},
            "not a channel name",
        ),
        (
            ["alice", "--ttl", "0"],
            {"THUNDERPUSH_APIKEY": KEY, "THUNDERPUSH_APISECRET": SECRET},
            "not a whole number of seconds",
        ),
    ],
    ids=["no-key", "no-secret", "blank-secret", "bad-user", "bad-channel", "bad-ttl"],
)
def test_the_command_refuses_bad_input_with_a_clear_message(args, env, says):
    result = run_command(*args, **env)
    assert result.returncode == 2
    assert result.stdout == ""
    assert says in result.stderr and "Traceback" not in result.stderr
