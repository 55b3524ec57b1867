"""What one of a site's Paillier worker processes runs (see `pool.PaillierPool`).

Each process holds the site's key once (`init`, the pool's initializer) and then computes
obfuscators, or encrypts or decrypts one contiguous chunk, with FATE's fate_utils Paillier.
Imported by spawned processes: gmpy2, fate_utils and the standard library only (FATE's own
`fate.arch` wrappers would import torch into every worker).
"""
from __future__ import annotations

from ._obfuscation_worker import make_obfuscators
from .cipher import decrypt_native, encrypt_native
from .keys import native_key

_site: dict = {}


def init(n: int, h_n: int, public_state: bytes | None, secret_state: bytes | None) -> None:
    """Run once per process. The key states come only when this process encrypts and decrypts (workers > 1)."""
    _site.update(n=n, h_n=h_n, pk=native_key("PK", public_state) if public_state else None,
                 sk=native_key("SK", secret_state) if secret_state else None)


def obfuscators(count: int) -> list[int]:
    return make_obfuscators(_site["n"], _site["h_n"], count)


def encrypt(plaintexts: list[int], obfuscators: list[int]) -> list[int]:
    return encrypt_native(_site["pk"], plaintexts, obfuscators)


def decrypt(ciphertexts: list[int]) -> list[int]:
    return decrypt_native(_site["sk"], ciphertexts)
