"""Column-wise Redis commands against hiredis's packer: the same bytes, however they are sliced."""

from __future__ import annotations

import hiredis
import numpy as np
import pyarrow as pa

from feature_repo.stores import redis_commands

rng = np.random.default_rng(5)
KEYS = pa.array([bytes(rng.integers(0, 256, rng.integers(1, 60), dtype=np.uint8)) for _ in range(500)], pa.binary())
FIELDS = [b"_ts:view", b"\x00\r\n\xff", b"x" * 300]
VALUES = [
    pa.array([bytes(rng.integers(0, 256, rng.integers(0, 400), dtype=np.uint8)) for _ in range(500)], pa.binary())
    for _ in FIELDS
]


def _packed(rows: list[int]) -> bytes:
    return b"".join(
        hiredis.pack_command(
            (b"HSET", KEYS[i].as_py(), *[x for f, v in zip(FIELDS, VALUES, strict=True) for x in (f, v[i].as_py())])
        )
        for i in rows
    )


def test_hset_commands_are_hiredis_bytes() -> None:
    commands = redis_commands.hset_commands(KEYS, FIELDS, VALUES)
    assert bytes(redis_commands.wire_bytes(commands, range(500))) == _packed(list(range(500)))
    assert bytes(redis_commands.wire_bytes(commands, range(17, 230))) == _packed(list(range(17, 230)))
    picked = np.array([3, 499, 0, 42])
    assert bytes(redis_commands.wire_bytes(commands, picked)) == _packed(picked.tolist())
    sliced = commands.slice(100, 50)
    assert bytes(redis_commands.wire_bytes(sliced, range(10, 20))) == _packed(list(range(110, 120)))


def test_expire_commands_are_hiredis_bytes() -> None:
    commands = redis_commands.expire_commands(KEYS, 3600)
    want = b"".join(hiredis.pack_command((b"EXPIRE", k, 3600)) for k in KEYS.to_pylist())
    assert bytes(redis_commands.wire_bytes(commands, range(500))) == want


def test_long_values_get_their_length_formatted() -> None:
    """Headers of values past the header table's limit are formatted, not looked up."""
    values = [pa.array([b"a" * 70_000, b"", b"xyz"], pa.binary()) for _ in FIELDS]
    keys = pa.array([b"k1", b"k2", b"k\r\n3"], pa.binary())
    commands = redis_commands.hset_commands(keys, FIELDS, values)
    want = b"".join(
        hiredis.pack_command(
            (b"HSET", keys[i].as_py(), *[x for f, v in zip(FIELDS, values, strict=True) for x in (f, v[i].as_py())])
        )
        for i in range(3)
    )
    assert bytes(redis_commands.wire_bytes(commands, range(3))) == want
