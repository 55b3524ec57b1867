"""Pairwise masks under the Paillier encryption, so that even a site holding the secret key learns only the sum.

Every pair of sites (i, j), i < j in `Channel.sites` order, shares a seed from FATE's Diffie-Hellman
(`fate.arch.protocol.diffie_hellman`). The hosts' public values travel through the guest, as every
other message does: hosts never talk to each other directly (see `agree_pair_seeds`).

Per exchange (the channel's `exchange_id`: job + tag path, and the exchange's name, ``values`` or
``weight``) each pair derives a ChaCha20 key (HKDF-SHA256 over the pair's seed, bound to both sites'
labels, the exchange id and the name); the keystream, cut into (key_bytes + 16)-byte blocks, gives
one mask per ciphertext index, each reduced mod n (the 128 extra bits make it uniform mod n within
2**-128). Site i adds the pair's mask mod n to its i-th packed plaintext, site j subtracts it. In the
arbiter's ciphertext product the masks cancel: the decrypted sum is the true sum, exactly, because
the packing's headroom keeps the true sum below n (packing.py). A single site's masked plaintext is
uniform mod n to anyone missing one of its pair seeds.
"""
from __future__ import annotations

from dataclasses import dataclass

from fate_components.core.errors import LungError

from .channel import Channel, SiteAddress, own_site_index

__all__ = ["MASK_TAG", "PairwiseMasks", "agree_pair_seeds"]

MASK_TAG = "paillier_masks"
_OVERSAMPLE_BYTES = 16   # 128 extra bits per mask: reduced mod n, its bias is below 2**-128


def agree_pair_seeds(channel: Channel) -> dict[int, bytes]:
    """A Diffie-Hellman seed with every other site: site index -> 32-byte shared secret.

    Messages (under the tag ``paillier_masks``): each host sends the guest one public value per other
    site (``mask_dh_public``); the guest hands each host the public values addressed to it, its own
    included (``mask_dh_relay``). The guest only relays: it never learns a host-host seed (unless it
    substitutes the public values; see docs/concepts/secure-aggregation.md).
    """
    from fate.arch.protocol.diffie_hellman import DiffieHellman

    sub = channel.sub(MASK_TAG)
    sites = sub.sites
    me = own_site_index(sub)
    mine = {j: DiffieHellman() for j in range(len(sites)) if j != me}
    publics = {j: dh.get_public_key() for j, dh in mine.items()}
    if me == 0:
        from_hosts = dict(zip(range(1, len(sites)), sub.from_hosts("mask_dh_public")))
        for i, host in enumerate(sites[1:], start=1):
            addressed = {j: from_hosts[j][i] for j in from_hosts if j != i}
            addressed[0] = publics[i]
            sub.to_party(host.rank, "mask_dh_relay", addressed)
        theirs = {j: from_hosts[j][0] for j in from_hosts}
    else:
        sub.to_guest("mask_dh_public", publics)
        theirs = sub.from_guest("mask_dh_relay")
    if set(theirs) != set(mine):
        raise LungError(f"Secure aggregation failed: {sites[me].label} got mask public values from sites "
                        f"{sorted(theirs)}, expected {sorted(mine)}")
    return {j: mine[j].diffie_hellman(theirs[j]) for j in mine}


@dataclass(frozen=True)
class _Pair:
    other: int
    sign: int          # +1 toward later sites, -1 toward earlier ones
    key: bytes         # HKDF of the DH seed, bound to both sites' labels


class PairwiseMasks:
    """One site's masks: `apply` adds, mod n, the net mask of all its pairs to each packed plaintext."""

    def __init__(self, sites: list[SiteAddress], me: int, seeds: dict[int, bytes], n: int) -> None:
        if set(seeds) != set(range(len(sites))) - {me}:
            raise LungError(f"Secure aggregation failed: {sites[me].label} holds mask seeds for sites "
                            f"{sorted(seeds)} of {len(sites)}")
        self.n = n
        self._labels = [s.label for s in sites]
        self._block = (n.bit_length() + 7) // 8 + _OVERSAMPLE_BYTES
        self._pairs = [_Pair(j, 1 if me < j else -1,
                             _hkdf(seeds[j], b"fate-lung pair seed|" + _pair_label(sites, me, j)))
                       for j in sorted(seeds)]
        self._used: set[tuple[str, str]] = set()

    @classmethod
    def agree(cls, channel: Channel, n: int) -> "PairwiseMasks":
        """Agree on the pair seeds over `channel` (every site calls this at the same step) for modulus `n`."""
        return cls(channel.sites, own_site_index(channel), agree_pair_seeds(channel), n)

    @property
    def fingerprints(self) -> dict[str, str]:
        """Other site's label -> a short hash of this pair's seed; both sites of a pair log the same one.

        Two sites whose fingerprints for their pair differ did not agree on one seed: a relaying guest
        substituted a public value (a man in the middle). Operators can compare them out of band.
        """
        import hashlib

        return {self._labels[p.other]: hashlib.sha256(b"fate-lung mask fingerprint|" + p.key).hexdigest()[:16]
                for p in self._pairs}

    def pair_mask(self, other: int, exchange_id: str, name: str, count: int) -> list[int]:
        """The masks this site shares with site `other` for `count` ciphertexts of one exchange (unsigned)."""
        pair = next(p for p in self._pairs if p.other == other)
        return self._stream(pair, exchange_id, name, count)

    def apply(self, plaintexts: list[int], exchange_id: str, name: str) -> list[int]:
        """(m_i + sum of signed pair masks_i) mod n for each ciphertext index i; refuses to mask one exchange twice."""
        key = (exchange_id, name)
        if key in self._used:   # a second use would send two plaintexts under the same masks
            raise LungError(f"Secure aggregation failed: exchange {name!r} under {exchange_id!r} was masked twice; "
                            f"every exchange needs its own tag path")
        self._used.add(key)
        n = self.n
        out = list(plaintexts)
        for pair in self._pairs:
            masks = self._stream(pair, exchange_id, name, len(out))
            if pair.sign > 0:
                out = [m + r for m, r in zip(out, masks)]
            else:
                out = [m - r for m, r in zip(out, masks)]
        return [m % n for m in out]

    def _stream(self, pair: _Pair, exchange_id: str, name: str, count: int) -> list[int]:
        from cryptography.hazmat.primitives.ciphers import Cipher, algorithms

        key = _hkdf(pair.key, f"fate-lung mask|{exchange_id}|{name}".encode())
        # A fresh key per exchange, so the all-zero nonce is never reused with one key; block i of the
        # keystream is ciphertext i's mask.
        stream = Cipher(algorithms.ChaCha20(key, bytes(16)), mode=None).encryptor().update(bytes(count * self._block))
        b, n = self._block, self.n
        return [int.from_bytes(stream[i:i + b], "big") % n for i in range(0, count * b, b)]


def _pair_label(sites: list[SiteAddress], a: int, b: int) -> bytes:
    i, j = sorted((a, b))
    return f"{sites[i].label}|{sites[j].label}".encode()


def _hkdf(secret: bytes, info: bytes) -> bytes:
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.kdf.hkdf import HKDF

    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=info).derive(secret)
