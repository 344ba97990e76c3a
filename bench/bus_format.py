"""The cluster bus's message format, measured: encode + decode of one publish.

Two ways to carry every field of a bus message so that none can spill into
another: length-prefixed fields (what ``thunderpush.cluster.bus`` does) and one
line of JSON before the payload.  Each is timed encoding a publish's head and
payload, then decoding it back to its fields and payload, the best of five
runs, for a plain publish and one with every ``PublishOptions`` field set::

    python -m bench.bus_format
"""

from __future__ import annotations

import json
import timeit

from thunderpush.cluster.bus import publication_head, read_fields
from thunderpush.core.broker import PLAIN, PublishOptions

PAYLOAD = '{"message": "hello world", "n": 12345}' * 3
OPTIONS = PublishOptions("client-x", "123.456", "bob", True)


def length_prefixed(options: PublishOptions) -> tuple[list[str], str]:
    data = publication_head("news", options) + PAYLOAD.encode("utf-8", "surrogatepass")
    fields, at = read_fields(data, 1, 1 if data[:1] == b"c" else 5)
    return fields, data[at:].decode("utf-8", "surrogatepass")


def json_line(options: PublishOptions) -> tuple[list[str], str]:
    head = ["news"] if options == PLAIN else ["news", *options]
    data = b"c" + json.dumps(head).encode() + b"\n" + PAYLOAD.encode("utf-8", "surrogatepass")
    line, _, payload = data[1:].partition(b"\n")
    return json.loads(line), payload.decode("utf-8", "surrogatepass")


def best_us(run, options: PublishOptions, number: int = 50_000) -> float:
    return min(timeit.repeat(lambda: run(options), number=number, repeat=5)) / number * 1e6


def main() -> None:
    for name, options in (("plain publish", PLAIN), ("with options", OPTIONS)):
        assert length_prefixed(options)[1] == json_line(options)[1] == PAYLOAD
        ours, other = best_us(length_prefixed, options), best_us(json_line, options)
        print(f"{name}: length-prefixed {ours:.2f} us, JSON line {other:.2f} us")


if __name__ == "__main__":
    main()
