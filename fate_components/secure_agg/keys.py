"""Paillier keys from FATE's built-in implementation, and how they travel.

The sites share one key pair. The secret key crosses between sites only sealed with
AES-GCM under a key derived (HKDF-SHA256) from FATE's Diffie-Hellman; the arbiter gets
the public key and nothing else.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

from fate_components.core.errors import ConfigError

from ._fate_state import read_bigints, write_bigints

MIN_KEY_BITS = 2048


class WeakKeyError(ConfigError):
    """A Paillier key shorter than 2048 bits was asked for without allow_weak_key."""


def check_key_bits(key_bits: int, allow_weak_key: bool) -> None:
    if key_bits < MIN_KEY_BITS and not allow_weak_key:
        raise WeakKeyError(f"Paillier key of {key_bits} bits refused: below {MIN_KEY_BITS} bits it is not safe; "
                           f"set allow_weak_key=true only for tests")
    if key_bits < 512 or key_bits % 256:
        raise ConfigError(f"Paillier key size must be a multiple of 256 and at least 512, not {key_bits}")


def native_key(kind: str, data: bytes):
    """fate_utils' bare key (`kind` "PK" or "SK") from `to_bytes`; without FATE's wrappers, whose import pulls torch."""
    import fate_utils.paillier as fu

    key = getattr(fu, kind).__new__(getattr(fu, kind))
    key.__setstate__(list(data))
    return key


@dataclass
class PublicKey:
    fate_pk: object          # fate.arch.protocol.phe.paillier.PK
    n: int
    key_bits: int

    @property
    def n_square(self) -> int:
        return self.n * self.n

    @property
    def ciphertext_bytes(self) -> int:
        return (2 * self.key_bits + 7) // 8

    def to_bytes(self) -> bytes:
        return bytes(self.fate_pk.pk.__getstate__())

    @classmethod
    def from_bytes(cls, data: bytes) -> "PublicKey":
        from fate.arch.protocol.phe.paillier import PK

        return cls._wrap(PK(native_key("PK", data)))

    @classmethod
    def _wrap(cls, fate_pk) -> "PublicKey":
        n = read_bigints(fate_pk.pk.__getstate__(), vector=False, element_tail=False)[0]
        return cls(fate_pk=fate_pk, n=n, key_bits=n.bit_length())


@dataclass
class SecretKey:
    fate_sk: object          # fate.arch.protocol.phe.paillier.SK
    p: int
    q: int

    def to_bytes(self) -> bytes:
        return bytes(self.fate_sk.sk.__getstate__())

    @classmethod
    def from_bytes(cls, data: bytes, public: PublicKey) -> "SecretKey":
        from fate.arch.protocol.phe.paillier import SK

        return cls._wrap(SK(native_key("SK", data)), public.n)

    @classmethod
    def _wrap(cls, fate_sk, n: int) -> "SecretKey":
        numbers = read_bigints(fate_sk.sk.__getstate__(), vector=False, element_tail=False)
        for a in numbers:
            if 1 < a < n and n % a == 0:
                return cls(fate_sk=fate_sk, p=a, q=n // a)
        raise ConfigError("could not find the factors of n in FATE's secret key")


def generate_keypair(key_bits: int = MIN_KEY_BITS, *, allow_weak_key: bool = False) -> tuple[PublicKey, SecretKey]:
    from fate.arch.protocol.phe.paillier import keygen

    check_key_bits(key_bits, allow_weak_key)
    sk, pk, _coder = keygen(key_bits)
    public = PublicKey._wrap(pk)
    return public, SecretKey._wrap(sk, public.n)


def count_secret_keys_in_process() -> int:
    """Secret-key objects reachable in this process (ours, FATE's wrapper, or the bare fate_utils key).

    fate_utils' key is a native object the garbage collector does not track, so it is looked
    for among the referents of every tracked object as well.
    """
    import gc

    import fate_utils.paillier as fu
    from fate.arch.protocol.phe.paillier import SK as FateSK

    found: set[int] = set()
    for obj in gc.get_objects():
        if isinstance(obj, (SecretKey, FateSK, fu.SK)):
            found.add(id(obj))
        for ref in gc.get_referents(obj):
            if isinstance(ref, fu.SK):
                found.add(id(ref))
    return len(found)


def _aead(shared_secret: bytes, context: bytes):
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM
    from cryptography.hazmat.primitives.kdf.hkdf import HKDF

    key = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=b"fate-lung paillier sk " + context).derive(
        shared_secret)
    return AESGCM(key)


def seal(shared_secret: bytes, payload: bytes, context: bytes) -> tuple[bytes, bytes]:
    """AES-GCM under an HKDF key from a Diffie-Hellman secret; `context` binds it to the two parties."""
    nonce = os.urandom(12)
    return nonce, _aead(shared_secret, context).encrypt(nonce, payload, context)


def unseal(shared_secret: bytes, sealed: tuple[bytes, bytes], context: bytes) -> bytes:
    from cryptography.exceptions import InvalidTag

    nonce, data = sealed
    try:
        return _aead(shared_secret, context).decrypt(nonce, data, context)
    except InvalidTag:
        raise ConfigError("the sealed Paillier secret key failed authentication (tampered or wrong party)") from None


__all__ = ["MIN_KEY_BITS", "WeakKeyError", "PublicKey", "SecretKey", "generate_keypair", "check_key_bits", "seal",
           "unseal", "native_key", "write_bigints"]
