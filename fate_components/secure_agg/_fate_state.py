"""Read and write the serialised state of fate_utils' Paillier objects.

fate_utils stores each big integer as (u32 radix, u64 length, digits); a vector is a u64
count followed by its elements, each (ciphertext or plaintext) followed by a u32 (zero);
keys hold bare big integers (`element_tail=False`, `vector=False`).
Going through this state lets us move ciphertexts as 512-byte integers instead of pickled
hex text (4x the size), and build FATE ciphertext/plaintext vectors from Python integers.
"""
from __future__ import annotations

import struct


class StateFormatError(ValueError):
    """The installed fate_utils serialises its Paillier objects differently than expected."""


def read_bigints(state, *, element_tail: bool = True, vector: bool = True) -> list[int]:
    data = bytes(state)
    pos, count = (8, struct.unpack_from("<Q", data, 0)[0]) if vector else (0, None)
    out = []
    while (count is None and pos < len(data)) or (count is not None and len(out) < count):
        radix, length = struct.unpack_from("<IQ", data, pos)
        pos += 12
        if radix not in (10, 16):
            raise StateFormatError(f"unexpected radix {radix} at byte {pos - 12}")
        out.append(int(data[pos:pos + length].decode("ascii"), radix))
        pos += length + (4 if element_tail else 0)
    return out


def write_bigints(values, *, element_tail: bool = True) -> list[int]:
    parts = [struct.pack("<Q", len(values))]
    tail = b"\x00\x00\x00\x00" if element_tail else b""
    for v in values:
        digits = format(int(v), "x").encode("ascii")
        parts.append(struct.pack("<IQ", 16, len(digits)) + digits + tail)
    return list(b"".join(parts))
