"""Redis Cluster's plumbing against a real three-master cluster: key slots as
Redis computes them."""

from __future__ import annotations

import random

from thunderpush.cluster.slots import key_slot


def test_key_slot_is_redis_clusters(fresh_redis_cluster):
    chosen = [
        *(b"", b"{", b"}", b"{}", b"}{", b"a{}b", b"a{}b}", b"{}{a}", b"}a{b}c", b"{a}{b}"),
        *(b"{{a}}", b"a{b", b"a}b", b"{\x00}x", b"{\xff\xfe}y", b"x{\n}", b"{ }"),
        b"tp:{5:myapp:u:bo}b}:n",  # a user id with '}': the tag ends there
        "tp:{5:myapp:c:caf\u00e9}:h".encode(),
        "tp/{5:myapp:u:\ud800}".encode("utf-8", "surrogatepass"),
        b"tp:{N:" + b"f" * 32 + b"}:5:myapp:c",
        b"k" * 1000,
    ]
    rng = random.Random(16)
    alphabet = b"{}ab\x00\xff:"
    made = [bytes(rng.choice(alphabet) for _ in range(rng.randrange(12))) for _ in range(2000)]
    made += [rng.randbytes(rng.randrange(40)) for _ in range(500)]
    keys = chosen + made
    with fresh_redis_cluster.servers[0].client() as client:
        pipe = client.pipeline(transaction=False)
        for key in keys:
            pipe.execute_command("CLUSTER", "KEYSLOT", key)
        slots = pipe.execute()
    pairs = zip(keys, slots, strict=True)
    assert [(key, slot) for key, slot in pairs if key_slot(key) != slot] == []
    assert len(set(slots)) > 1000  # spread: not all hashed alike
