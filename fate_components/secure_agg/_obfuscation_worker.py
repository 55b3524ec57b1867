"""Paillier obfuscators r^n mod n^2, computed fast from a fixed public base (runs in worker processes).

Damgard-Jurik-Nielsen's variant of Paillier: with h_n = (-y^2)^n mod n^2 public, the
randomiser h_n^a for a uniform a of ceil(k/2) bits is an n-th residue like r^n and is
indistinguishable from it under the DCR assumption (DJN 2010, section 4.2). A fixed base
allows a comb table: 103 multiplications per randomiser for k = 2048 instead of a full
2048-bit exponentiation, which is what makes precomputation cheap.

Only gmpy2 and the standard library here: this module is imported by spawned workers.
"""
from __future__ import annotations

import secrets

import gmpy2

WINDOW_BITS = 10   # 103 multiplications per randomiser, a 54 MB table built once per job (0.5 s)
_tables: dict[tuple[int, int], list[list]] = {}


def exponent_bits(n: int) -> int:
    return (n.bit_length() + 1) // 2


def _table(n: int, h_n: int) -> list[list]:
    key = (n, h_n)
    if key not in _tables:
        n2 = gmpy2.mpz(n) * n
        base = gmpy2.mpz(h_n)
        windows = -(-exponent_bits(n) // WINDOW_BITS)
        table = []
        for _ in range(windows):
            row = [gmpy2.mpz(1), base]
            for _ in range(2, 1 << WINDOW_BITS):
                row.append(row[-1] * base % n2)
            table.append(row)
            base = row[-1] * base % n2          # base^(2^WINDOW_BITS)
        _tables.clear()
        _tables[key] = table
    return _tables[key]


def make_obfuscators(n: int, h_n: int, count: int) -> list[int]:
    table = _table(n, h_n)
    n2 = gmpy2.mpz(n) * n
    mask = (1 << WINDOW_BITS) - 1
    bits = exponent_bits(n)
    out = []
    for _ in range(count):
        a = secrets.randbits(bits)
        acc = gmpy2.mpz(1)
        for row in table:
            digit = a & mask
            if digit:
                acc = acc * row[digit] % n2
            a >>= WINDOW_BITS
        out.append(int(acc))
    return out


def public_base(n: int) -> int:
    """h_n = (-y^2)^n mod n^2 for a random unit y (DJN's public base)."""
    n2 = gmpy2.mpz(n) * n
    while True:
        y = gmpy2.mpz(secrets.randbelow(n - 2) + 2)
        if gmpy2.gcd(y, n) == 1:
            h = (-(y * y)) % n
            return int(gmpy2.powmod(h, n, n2))
