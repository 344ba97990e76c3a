from pathlib import Path

from setuptools import find_packages, setup

about = {}
exec(Path("thunderpush/__init__.py").read_text(), about)

setup(
    name="thunderpush",
    version=about["__version__"],
    description="A self-hosted real-time push server (Tornado + SockJS).",
    long_description=Path("README.md").read_text(encoding="utf-8"),
    long_description_content_type="text/markdown",
    license="BSD-3-Clause",
    python_requires=">=3.10",
    # thunderpush_client is the thunderpush-client distribution's package
    # (clients/python/), shipped here too: the server's token checks are its
    # code, and a backend installing the server needs nothing more.
    packages=[
        *find_packages(include=["thunderpush", "thunderpush.*", "thunderpush_bench"]),
        "thunderpush_client",
    ],
    package_dir={"thunderpush_client": "clients/python/thunderpush_client"},
    # thunderpush/static/thunderpush.js links to client/thunderpush.js; the
    # build copies the file itself, so the server can serve it when installed.
    # api/openapi.json is the API's description, served at /api/1.0.0/openapi.json.
    # dashboard/static/ is the dashboard's page, script and style sheet.
    # cluster/lua/ holds the Lua scripts a cluster node loads into Redis.
    package_data={
        "thunderpush": [
            "static/thunderpush.js",
            "api/openapi.json",
            "dashboard/static/*",
            "cluster/lua/*.lua",
        ]
    },
    install_requires=[
        "tornado>=6.3,<7",
        "sockjs-tornado==1.0.7",
        "httptools>=0.6.4",
        "websockets>=14",
        # The cluster (--redis-url) only; a single process never imports it.
        # hiredis: the C parser (and packer) of thunderpush.cluster.connection; redis-py
        # for reading the URL as it always has been read, and the TLS options.
        "redis[hiredis]>=8.1,<9",
        # --config reads TOML: the standard library's tomllib from 3.11, its original before.
        'tomli>=1.1; python_version < "3.11"',
        # /metrics (thunderpush.observe); tested with 0.20 and 0.26.
        "prometheus-client>=0.20,<1",
        # The webhook sender's HTTP client: kept connections, a third of the CPU per
        # POST of Tornado's own client over TLS (bench/webhook_post.py, docs/webhooks.rst).
        "aiohttp>=3.10.11,<4",
        # API bodies read in C where it agrees with the standard library
        # (thunderpush/api/bodies.py): in process a publish 23.5 -> 22.8 us, a Pusher
        # trigger 40.8 -> 38.1 us (issue 19); without it the standard library reads alone.
        "orjson>=3.9,<4",
    ],
    entry_points={
        "console_scripts": [
            "thunderpush = thunderpush.server.cli:main",
            "thunderpush-bench = thunderpush_bench.cli:main",
            "thunderpush-token = thunderpush.auth_cli:main",
        ]
    },
    classifiers=[
        "License :: OSI Approved :: BSD License",
        "Programming Language :: Python :: 3",
        "Framework :: Tornado",
    ],
)
