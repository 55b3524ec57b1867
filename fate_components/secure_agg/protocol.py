"""The Paillier secure-aggregation protocol: the sites' half (`PaillierClient`) and the arbiter's (`PaillierServer`).

Written against `Channel`, so it runs over FATE's federation (components/_fate_channel.py) and over
the in-memory channel of the unit tests alike.

Setup (tag ``paillier_keys``): the guest generates the key pair and deals it to each host in turn
(``dh_public`` -> ``dh_public_reply`` -> ``sealed_key``: public key, DJN base h_n, and the secret key
sealed under their Diffie-Hellman secret), then sends the arbiter the public key only (``public_key``).

Per exchange (one `weighted_mean` call, under the exchange's tag), every site sends
Enc(packed fixed-point of (n_s/N) * x_s) (``values_cipher``); the arbiter multiplies ciphertexts
(adds plaintexts) with FATE's evaluator and returns one shard of the encrypted sum to each site
(``values_shard``, or the error text when a site's message was bad); each site decrypts its shard
and the decrypted shards (parts of the aggregate, which every site obtains anyway) meet at the
guest (``values_plain``), which hands them all to every host (``values_plain_all``), so decryption
work is split between the sites. N, the total weight of an exchange, travels the same way (the
``weight_*`` messages, one ciphertext per site) the first time a tag is used.

Masks (masking.py, always on): after the keys, every pair of sites agrees on a seed (tag
``paillier_masks``), and each site adds, mod n, pairwise masks that cancel in the sum to every packed
plaintext, the weight's included, before encrypting. A site holding the secret key, colluding with
the arbiter, decrypts only masked values of the others; the decrypted sum is exact.
"""
from __future__ import annotations

import hashlib
import logging
import time
from dataclasses import dataclass

import numpy as np

from fate_components.core.errors import ConfigError, LungError, reject_unknown_options

from . import cipher
from ._obfuscation_worker import public_base
from .channel import Channel, SiteAddress, own_site_index
from .keys import PublicKey, SecretKey, check_key_bits, generate_keypair, seal, unseal
from .masking import PairwiseMasks
from .packing import PackingSpec, decode_sum, encode_weighted, pack, unpack
from .pool import PaillierPool, contiguous_chunks, resolve_workers

__all__ = ["PaillierOptions", "ExchangeStats", "PaillierClient", "PaillierServer"]

KEY_TAG = "paillier_keys"
logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class PaillierOptions:
    key_bits: int = 2048
    allow_weak_key: bool = False
    precision_bits: int = 20
    clip: float = 8.0
    workers: int | str = "auto"   # processes per site (see pool.py); "auto": the cores shared by the co-located sites

    def __post_init__(self) -> None:
        if self.workers != "auto" and (isinstance(self.workers, bool) or not isinstance(self.workers, int)
                                       or self.workers < 0):
            raise ConfigError(f"paillier.workers must be \"auto\" or a whole number >= 0, not {self.workers!r}")

    @classmethod
    def from_dict(cls, d: dict | None) -> "PaillierOptions":
        d = dict(d or {})
        try:
            reject_unknown_options(d, cls, "paillier")
        except ConfigError as e:
            if "obfuscation_workers" in d:
                raise ConfigError(f"{e}; obfuscation_workers was renamed workers (it now also sets the processes "
                                  f"that decrypt)") from None
            raise
        options = cls(**d)
        check_key_bits(options.key_bits, options.allow_weak_key)
        return options


@dataclass
class ExchangeStats:
    """One site's costs of one exchange (logged per round as metrics)."""

    encrypt_seconds: float = 0.0
    decrypt_seconds: float = 0.0
    bytes_sent: int = 0
    clipped: int = 0


def _binding(guest: SiteAddress, host_id: str) -> bytes:
    """What the sealed secret key is bound to: which guest dealt it to which host."""
    return f"{guest.label} -> host {host_id}".encode()


def _deal_key(keys: Channel, options: PaillierOptions) -> tuple[PublicKey, SecretKey, int]:
    """The guest: generate the key pair, seal the secret key to each host in turn, give the arbiter the public key."""
    from fate.arch.protocol.diffie_hellman import DiffieHellman

    public, secret = generate_keypair(options.key_bits, allow_weak_key=options.allow_weak_key)
    h_n = public_base(public.n)
    guest, *hosts = keys.sites
    for host in hosts:
        dh = DiffieHellman()
        keys.to_party(host.rank, "dh_public", dh.get_public_key())
        shared = dh.diffie_hellman(keys.from_party(host.rank, "dh_public_reply"))
        keys.to_party(host.rank, "sealed_key",
                      (public.to_bytes(), h_n, seal(shared, secret.to_bytes(), _binding(guest, host.party_id))))
    keys.to_arbiter("public_key", public.to_bytes())
    return public, secret, h_n


def _receive_key(keys: Channel) -> tuple[PublicKey, SecretKey, int]:
    """A host: answer the guest's Diffie-Hellman and open the sealed secret key."""
    from fate.arch.protocol.diffie_hellman import DiffieHellman

    dh = DiffieHellman()
    guest_public = keys.from_guest("dh_public")
    keys.to_guest("dh_public_reply", dh.get_public_key())
    shared = dh.diffie_hellman(guest_public)
    public_bytes, h_n, sealed = keys.from_guest("sealed_key")
    public = PublicKey.from_bytes(public_bytes)
    secret = SecretKey.from_bytes(unseal(shared, sealed, _binding(keys.sites[0], keys.party_id)), public)
    return public, secret, h_n


class PaillierClient:
    """A site's half: one key pair shared by all sites; `weighted_mean` is one exchange."""

    def __init__(self, options: PaillierOptions) -> None:
        self.options = options
        self.workers = 0
        self.public: PublicKey | None = None
        self._secret: SecretKey | None = None
        self._pool: PaillierPool | None = None
        self._masks: PairwiseMasks | None = None
        self._totals: dict[str, tuple[float, float]] = {}
        self.last: dict[str, ExchangeStats] = {}

    def setup(self, channel: Channel, *, colocated_sites: int = 1) -> "PaillierClient":
        """Agree on the key pair (the secret key travels sealed under Diffie-Hellman); start the worker processes.

        `colocated_sites`: how many sites run on this machine, when known (FATE standalone: all of them),
        so that ``workers="auto"`` shares the cores among them.
        """
        keys = channel.sub(KEY_TAG)
        public, secret, h_n = _deal_key(keys, self.options) if channel.is_guest else _receive_key(keys)
        self.public, self._secret = public, secret
        self._masks = PairwiseMasks.agree(channel, public.n)
        # Both sites of a pair log the same fingerprint unless the relaying guest substituted a public value.
        logger.info("pairwise mask seed fingerprints at %s: %s", channel.party_id,
                    ", ".join(f"with {label}: {fp}" for label, fp in self._masks.fingerprints.items()))
        self._spec = PackingSpec.for_key(public.key_bits, precision_bits=self.options.precision_bits,
                                         clip=self.options.clip, max_sites=max(2, len(channel.sites)))
        me = channel.sites[own_site_index(channel)]
        self.workers = resolve_workers(self.options.workers, colocated_sites)
        self._pool = PaillierPool(public, secret, h_n, workers=self.workers, site=me.label)
        return self

    def close(self) -> None:
        """End the worker processes (once per job, after the last round)."""
        if self._pool is not None:
            self._pool.close()
            self._pool = None

    def weighted_mean(self, channel: Channel, tag: str, arrays: list[np.ndarray], weight: float) -> list[np.ndarray]:
        """sum_s(w_s * x_s) / sum_s(w_s) over all sites, elementwise, as float32 arrays shaped like `arrays`."""
        sub = channel.sub(tag)
        stats = ExchangeStats()
        total = self._total_weight(sub, tag, weight, stats)
        flat = np.concatenate([np.asarray(a, dtype=np.float64).ravel() for a in arrays])
        t0 = time.perf_counter()
        codes, stats.clipped = encode_weighted(flat, weight / total, self._spec)
        packed = pack(codes, self._spec)
        cts = self._pool.encrypt(self._masks.apply(packed, sub.exchange_id, "values"))
        blob = cipher.to_wire(self.public, cts)
        stats.encrypt_seconds = time.perf_counter() - t0
        stats.bytes_sent = len(blob)
        summed = self._exchange(sub, "values", blob, len(cts), stats)
        # Next round's obfuscators, computed while this site trains; asked for after the decryption,
        # which would otherwise queue behind them in the workers.
        self._pool.request(len(packed))
        mean = decode_sum(unpack(summed, flat.size, self._spec), self._spec)
        out, pos = [], 0
        for a in arrays:
            size = int(np.prod(np.shape(a)))
            out.append(mean[pos:pos + size].reshape(np.shape(a)).astype(np.float32))
            pos += size
        self.last[tag] = stats
        return out

    def _total_weight(self, sub: Channel, tag: str, weight: float, stats: ExchangeStats) -> float:
        known = self._totals.get(tag)
        if known is not None:
            if known[0] != weight:
                raise ConfigError(f"the weight of exchange {tag!r} changed from {known[0]} to {weight}; weights are "
                                  f"sample counts, fixed for a job")
            return known[1]
        scaled = int(round(weight * 1000))  # weights are sample counts; 1/1000 resolution for fractional ones
        cts = self._pool.encrypt(self._masks.apply([scaled], sub.exchange_id, "weight"))
        summed = self._exchange(sub, "weight", cipher.to_wire(self.public, cts), 1, stats)
        if summed[0] >= 1 << 63:   # masks that do not cancel leave a value uniform mod n: never a sample count
            raise LungError(f"Secure aggregation failed: the decrypted total weight of {tag!r} is not a sample count, "
                            f"so the pairwise masks did not cancel: two sites hold different seeds for their pair "
                            f"(a relayed Diffie-Hellman public value was replaced?). Compare the 'pairwise mask seed "
                            f"fingerprints' each site logged")
        total = summed[0] / 1000.0
        if not total > 0:
            raise LungError(f"Secure aggregation failed: total weight of {tag!r} is {total}")
        self._totals[tag] = (weight, total)
        return total

    def _exchange(self, sub: Channel, name: str, blob: bytes, count: int, stats: ExchangeStats) -> list[int]:
        sub.to_arbiter(f"{name}_cipher", (count, blob))
        reply = sub.from_arbiter(f"{name}_shard")
        if isinstance(reply, str):  # the arbiter found a bad message and tells every site why
            raise LungError(reply)
        start, shard_blob = reply
        t0 = time.perf_counter()
        shard = cipher.from_wire(self.public, shard_blob, len(shard_blob) // self.public.ciphertext_bytes, "arbiter")
        plain = self._pool.decrypt(shard)
        stats.decrypt_seconds += time.perf_counter() - t0
        # Every site holds one decrypted part of the aggregate (which every site obtains anyway). The
        # parts meet at the guest, which hands all of them to every host: hosts never open a channel
        # to each other mid-round. Over RabbitMQ, two parties opening their pair's vhost at the same
        # instant could lose the first message (FATE ignores a failed queue creation,
        # fate/arch/federation/backends/rabbitmq/_rabbit_manager.py, create_queue).
        if sub.is_guest:
            parts = [(start, plain), *sub.from_hosts(f"{name}_plain")]
            sub.to_hosts(f"{name}_plain_all", parts)
        else:
            sub.to_guest(f"{name}_plain", (start, plain))
            parts = sub.from_guest(f"{name}_plain_all")
        values: list[int] = []
        for first, part in sorted(parts, key=lambda fp: (fp[0], len(fp[1]))):
            if not part:
                continue
            if first != len(values):
                raise LungError(f"Secure aggregation failed: decrypted shards do not line up at {first}")
            values.extend(part)
        if len(values) != count:
            raise LungError(f"Secure aggregation failed: {len(values)} decrypted values for {count} sent")
        return values


class PaillierServer:
    """The arbiter: adds ciphertexts with FATE's evaluator; it never holds a secret key."""

    def __init__(self, public: PublicKey, sites: list[SiteAddress]) -> None:
        self.public = public
        self._sites = list(sites)
        self._known_tags: set[str] = set()
        self.received: list[dict] = []      # what arrived, for the privacy audit

    @classmethod
    def connect(cls, channel: Channel, options: PaillierOptions) -> "PaillierServer":
        """Receive the public key from the guest (the last step of the sites' `setup`)."""
        public = PublicKey.from_bytes(channel.sub(KEY_TAG).from_guest("public_key"))
        check_key_bits(public.key_bits, options.allow_weak_key)
        return cls(public, channel.sites)

    def aggregate(self, channel: Channel, tag: str) -> None:
        """Sum one exchange and send each site its shard; returns None: the arbiter cannot see the mean."""
        sub = channel.sub(tag)
        if tag not in self._known_tags:
            self._sum(sub, "weight")
            self._known_tags.add(tag)
        self._sum(sub, "values")
        return None

    def _sum(self, sub: Channel, name: str) -> None:
        labels, ranks = [s.label for s in self._sites], [s.rank for s in self._sites]
        messages = [sub.from_guest(f"{name}_cipher"), *sub.from_hosts(f"{name}_cipher")]
        error, vectors = None, []
        counts = {label: m[0] if isinstance(m, tuple) and len(m) == 2 else None for label, m in zip(labels, messages)}
        for label, message in zip(labels, messages):
            self._audit(name, label, message)
        if len(set(counts.values())) != 1 or None in counts.values():
            error = f"Secure aggregation failed: sites sent different numbers of ciphertexts: {counts}"
        else:
            try:
                vectors = [cipher.from_wire(self.public, m[1], m[0], label) for label, m in zip(labels, messages)]
            except cipher.CiphertextError as e:
                error = str(e)
        if error is None:
            total = cipher.add_all(self.public, vectors)
            shards = contiguous_chunks(len(total), len(ranks))
        for i, rank in enumerate(ranks):
            if error is None:
                start, end = shards[i]
                reply = (start, cipher.to_wire(self.public, total[start:end]))
            else:
                reply = error
            sub.to_party(rank, f"{name}_shard", reply)
        if error is not None:
            raise LungError(error)

    def _audit(self, name: str, label: str, message) -> None:
        blob = message[1] if isinstance(message, tuple) and len(message) == 2 else message
        self.received.append({"exchange": name, "from": label, "type": type(blob).__name__,
                              "bytes": len(blob) if isinstance(blob, (bytes, bytearray)) else None,
                              "sha256": hashlib.sha256(blob).hexdigest() if isinstance(blob, (bytes, bytearray))
                              else None})

    def audit(self) -> dict:
        """What this arbiter process received and holds: the privacy tests read it from the arbiter's output."""
        from .keys import count_secret_keys_in_process

        return {"public_key_bits": self.public.key_bits, "secret_key_objects": count_secret_keys_in_process(),
                "received": self.received}
