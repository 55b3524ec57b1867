"""Paillier operations on FATE's built-in Paillier, plus what makes them fast.

- encryption: FATE's `encrypt_encoded(obfuscate=False)` (1 + m*n) times a precomputed
  obfuscator, combined with FATE's homomorphic `add` (adding Enc(0) = multiplying by r^n);
- summation at the arbiter: FATE's ciphertext `add`, public key only;
- decryption: FATE's `decrypt_to_encoded`; `Decryptor.decrypt` is an independent CRT
  decryption (same speed here) that the tests use to cross-check FATE's result and our key handling;
- wire format: each ciphertext as a fixed-width big-endian integer (512 bytes for a 2048-bit
  key), a quarter of FATE's pickled hex.
"""
from __future__ import annotations

import gmpy2

from fate_components.core.errors import LungError

from ._fate_state import read_bigints, write_bigints
from .keys import PublicKey, SecretKey


class CiphertextError(LungError):
    """A ciphertext message is truncated or corrupt; the message names the sending party."""


def _fate_ciphertexts(values: list[int]):
    import fate_utils.paillier as fu

    vec = fu.CiphertextVector()
    vec.__setstate__(write_bigints(values))
    return vec


def _fate_plaintexts(values: list[int]):
    import fate_utils.paillier as fu

    vec = fu.PlaintextVector()
    vec.__setstate__(write_bigints(values))
    return vec


def encrypt(public: PublicKey, plaintexts: list[int], obfuscators: list[int]) -> list[int]:
    check_plaintexts(public, plaintexts, obfuscators)
    return encrypt_native(public.fate_pk.pk, plaintexts, obfuscators[:len(plaintexts)])


def check_plaintexts(public: PublicKey, plaintexts: list[int], obfuscators: list[int]) -> None:
    """Refuse before encrypting: too few obfuscators, or a packed plaintext outside [0, n)."""
    if len(obfuscators) < len(plaintexts):
        raise ValueError(f"{len(plaintexts)} plaintexts but only {len(obfuscators)} obfuscators")
    if any(m < 0 or m >= public.n for m in plaintexts):
        raise ValueError("a packed plaintext does not fit below n; check the packing spec against the key size")


def encrypt_native(pk, plaintexts: list[int], obfuscators: list[int]) -> list[int]:
    """(1 + m*n) * obfuscator mod n^2 with fate_utils' bare key (`fate_utils.paillier.PK`): also run in workers."""
    bare = pk.encrypt_encoded(_fate_plaintexts(plaintexts), obfuscate=False)
    return read_bigints(bare.add(pk, _fate_ciphertexts(obfuscators)).__getstate__())


def decrypt_native(sk, ciphertexts: list[int]) -> list[int]:
    """FATE's decryption with fate_utils' bare key (`fate_utils.paillier.SK`): also run in workers."""
    return read_bigints(sk.decrypt_to_encoded(_fate_ciphertexts(ciphertexts)).__getstate__())


def add_all(public: PublicKey, vectors: list[list[int]]) -> list[int]:
    """Homomorphic sum of equally long ciphertext vectors (what the arbiter does)."""
    total = _fate_ciphertexts(vectors[0])
    for other in vectors[1:]:
        total = total.add(public.fate_pk.pk, _fate_ciphertexts(other))
    return read_bigints(total.__getstate__())


class Decryptor:
    def __init__(self, public: PublicKey, secret: SecretKey) -> None:
        p, q = gmpy2.mpz(secret.p), gmpy2.mpz(secret.q)
        self._p, self._q, self._n = p, q, gmpy2.mpz(public.n)
        self._p2, self._q2 = p * p, q * q
        g = self._n + 1
        self._hp = gmpy2.invert((gmpy2.powmod(g, p - 1, self._p2) - 1) // p, p)
        self._hq = gmpy2.invert((gmpy2.powmod(g, q - 1, self._q2) - 1) // q, q)
        self._q_inv = gmpy2.invert(q, p)
        self._public, self._secret = public, secret

    def decrypt(self, ciphertexts: list[int]) -> list[int]:
        p, q = self._p, self._q
        out = []
        for c in ciphertexts:
            c = gmpy2.mpz(c)
            mp = (gmpy2.powmod(c, p - 1, self._p2) - 1) // p * self._hp % p
            mq = (gmpy2.powmod(c, q - 1, self._q2) - 1) // q * self._hq % q
            out.append(int(mq + (mp - mq) * self._q_inv % p * q))
        return out

    def decrypt_with_fate(self, ciphertexts: list[int]) -> list[int]:
        """FATE's own decryption: what the protocol uses."""
        return decrypt_native(self._secret.fate_sk.sk, ciphertexts)


def to_wire(public: PublicKey, ciphertexts: list[int]) -> bytes:
    width = public.ciphertext_bytes
    return b"".join(c.to_bytes(width, "big") for c in ciphertexts)


def from_wire(public: PublicKey, blob: bytes, expected: int, sender: str) -> list[int]:
    width = public.ciphertext_bytes
    if not isinstance(blob, (bytes, bytearray)) or len(blob) != expected * width:
        got = len(blob) if isinstance(blob, (bytes, bytearray)) else type(blob).__name__
        raise CiphertextError(f"Secure aggregation failed: ciphertext message from {sender} is truncated or "
                              f"malformed: {got} bytes, expected {expected} ciphertexts of {width} bytes")
    n2 = public.n_square
    values = [int.from_bytes(blob[i:i + width], "big") for i in range(0, len(blob), width)]
    for i, c in enumerate(values):
        if not 0 < c < n2 or gmpy2.gcd(c, public.n) != 1:
            raise CiphertextError(f"Secure aggregation failed: ciphertext {i} from {sender} is not a valid "
                                  f"Paillier ciphertext for this key (corrupted in transit?)")
    return values
