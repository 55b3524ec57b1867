"""Paillier secure aggregation over FATE's federation: the sites' half and the arbiter's half.

Per exchange (one `weighted_mean` call), every site sends Enc(packed fixed-point of
(n_s/N) * x_s); the arbiter multiplies ciphertexts (adds plaintexts) with FATE's evaluator
and returns one shard of the encrypted sum to each site; each site decrypts its shard and
the decrypted shards (parts of the aggregate, which every site obtains anyway) meet at the
guest, which hands them all to every host, so decryption work is split between the sites. N, the total weight of an
exchange, travels the same way (as one ciphertext per site) the first time a tag is used.
The arbiter holds the public key only.
"""
from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass

import numpy as np
from fate.arch import Context

from fate_components.core.errors import ConfigError, LungError, reject_unknown_options
from fate_components.secure_agg import cipher
from fate_components.secure_agg._obfuscation_worker import public_base
from fate_components.secure_agg.keys import PublicKey, SecretKey, check_key_bits, generate_keypair, seal, unseal
from fate_components.secure_agg.obfuscation import ObfuscatorPool
from fate_components.secure_agg.packing import PackingSpec, decode_sum, encode_weighted, pack, unpack


@dataclass(frozen=True)
class PaillierOptions:
    key_bits: int = 2048
    allow_weak_key: bool = False
    precision_bits: int = 20
    clip: float = 8.0
    obfuscation_workers: int = 1

    @classmethod
    def from_dict(cls, d: dict | None) -> "PaillierOptions":
        d = dict(d or {})
        reject_unknown_options(d, cls, "paillier")
        options = cls(**d)
        check_key_bits(options.key_bits, options.allow_weak_key)
        return options


def _ranks(ctx: Context) -> list[int]:
    return [ctx.guest.rank, *ctx.hosts.ranks]


def _labels(ctx: Context) -> list[str]:
    return [f"guest {ctx.guest.party[1]}", *[f"host {h.party[1]}" for h in ctx.hosts]]


def _shards(n: int, parts: int) -> list[tuple[int, int]]:
    bounds = [round(i * n / parts) for i in range(parts + 1)]
    return list(zip(bounds[:-1], bounds[1:]))


@dataclass
class ExchangeStats:
    encrypt_seconds: float = 0.0
    decrypt_seconds: float = 0.0
    bytes_sent: int = 0
    clipped: int = 0


class PaillierClient:
    def __init__(self, options: PaillierOptions) -> None:
        self.options = options
        self.public: PublicKey | None = None
        self._decryptor: cipher.Decryptor | None = None
        self._pool: ObfuscatorPool | None = None
        self._totals: dict[str, tuple[float, float]] = {}
        self.last: dict[str, ExchangeStats] = {}

    # -- setup: one key pair for all sites; the secret key travels sealed under Diffie-Hellman ------------
    def setup(self, ctx: Context) -> "PaillierClient":
        from fate.arch.protocol.diffie_hellman import DiffieHellman

        key_ctx = ctx.sub_ctx("paillier_keys")
        if ctx.is_on_guest:
            public, secret = generate_keypair(self.options.key_bits, allow_weak_key=self.options.allow_weak_key)
            h_n = public_base(public.n)
            for host in key_ctx.hosts:
                dh = DiffieHellman()
                host.put("dh_public", dh.get_public_key())
                shared = dh.diffie_hellman(host.get("dh_public_reply"))
                binding = f"guest {ctx.guest.party[1]} -> host {host.party[1]}".encode()
                host.put("sealed_key", (public.to_bytes(), h_n, seal(shared, secret.to_bytes(), binding)))
            key_ctx.arbiter.put("public_key", public.to_bytes())
        else:
            dh = DiffieHellman()
            guest_public = key_ctx.guest.get("dh_public")
            key_ctx.guest.put("dh_public_reply", dh.get_public_key())
            shared = dh.diffie_hellman(guest_public)
            public_bytes, h_n, sealed = key_ctx.guest.get("sealed_key")
            public = PublicKey.from_bytes(public_bytes)
            binding = f"guest {ctx.guest.party[1]} -> host {ctx.local.party[1]}".encode()
            secret = SecretKey.from_bytes(unseal(shared, sealed, binding), public)
        self.public = public
        self._decryptor = cipher.Decryptor(public, secret)
        self._spec = PackingSpec.for_key(public.key_bits, precision_bits=self.options.precision_bits,
                                         clip=self.options.clip, max_sites=max(2, len(_ranks(ctx))))
        self._pool = ObfuscatorPool(public.n, h_n, workers=self.options.obfuscation_workers)
        self._ctx = ctx
        return self

    def close(self) -> None:
        if self._pool is not None:
            self._pool.close()

    # -- one exchange ------------------------------------------------------------------------------------
    def weighted_mean(self, round_ctx: Context, tag: str, arrays: list[np.ndarray], weight: float) -> list[np.ndarray]:
        sub = round_ctx.sub_ctx(tag)
        stats = ExchangeStats()
        total = self._total_weight(sub, tag, weight, stats)
        flat = np.concatenate([np.asarray(a, dtype=np.float64).ravel() for a in arrays])
        t0 = time.perf_counter()
        codes, stats.clipped = encode_weighted(flat, weight / total, self._spec)
        packed = pack(codes, self._spec)
        cts = cipher.encrypt(self.public, packed, self._pool.take(len(packed)))
        blob = cipher.to_wire(self.public, cts)
        stats.encrypt_seconds = time.perf_counter() - t0
        stats.bytes_sent = len(blob)
        self._pool.request(len(packed))  # next round's obfuscators, computed while this site trains
        summed = self._exchange(sub, "values", blob, len(cts), stats)
        mean = decode_sum(unpack(summed, flat.size, self._spec), self._spec)
        out, pos = [], 0
        for a in arrays:
            size = int(np.prod(np.shape(a)))
            out.append(mean[pos:pos + size].reshape(np.shape(a)).astype(np.float32))
            pos += size
        self.last[tag] = stats
        return out

    def _total_weight(self, sub: Context, tag: str, weight: float, stats: ExchangeStats) -> float:
        known = self._totals.get(tag)
        if known is not None:
            if known[0] != weight:
                raise ConfigError(f"the weight of exchange {tag!r} changed from {known[0]} to {weight}; weights are "
                                  f"sample counts, fixed for a job")
            return known[1]
        scaled = int(round(weight * 1000))  # weights are sample counts; 1/1000 resolution for fractional ones
        cts = cipher.encrypt(self.public, [scaled], self._pool.take(1))
        summed = self._exchange(sub, "weight", cipher.to_wire(self.public, cts), 1, stats)
        total = summed[0] / 1000.0
        if not total > 0:
            raise LungError(f"Secure aggregation failed: total weight of {tag!r} is {total}")
        self._totals[tag] = (weight, total)
        return total

    def _exchange(self, sub: Context, name: str, blob: bytes, count: int, stats: ExchangeStats) -> list[int]:
        sub.arbiter.put(f"{name}_cipher", (count, blob))
        reply = sub.arbiter.get(f"{name}_shard")
        if isinstance(reply, str):  # the arbiter found a bad message and tells every site why
            raise LungError(reply)
        start, shard_blob = reply
        t0 = time.perf_counter()
        shard = cipher.from_wire(self.public, shard_blob, len(shard_blob) // self.public.ciphertext_bytes, "arbiter")
        plain = self._decryptor.decrypt_with_fate(shard)
        stats.decrypt_seconds += time.perf_counter() - t0
        # Every site holds one decrypted part of the aggregate (which every site obtains anyway). The
        # parts meet at the guest, which hands all of them to every host: hosts never open a channel
        # to each other mid-round. Over RabbitMQ, two parties opening their pair's vhost at the same
        # instant could lose the first message (FATE ignores a failed queue creation,
        # fate/arch/federation/backends/rabbitmq/_rabbit_manager.py, create_queue).
        if self._ctx.is_on_guest:
            parts = [(start, plain), *(host.get(f"{name}_plain") for host in sub.hosts)]
            sub.hosts.put(f"{name}_plain_all", parts)
        else:
            sub.guest.put(f"{name}_plain", (start, plain))
            parts = sub.guest.get(f"{name}_plain_all")
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

    def __init__(self, ctx: Context, options: PaillierOptions) -> None:
        self.public = PublicKey.from_bytes(ctx.sub_ctx("paillier_keys").guest.get("public_key"))
        check_key_bits(self.public.key_bits, options.allow_weak_key)
        self._ctx = ctx
        self._known_tags: set[str] = set()
        self.received: list[dict] = []      # what arrived, for the privacy audit

    def aggregate(self, round_ctx: Context, tag: str) -> None:
        sub = round_ctx.sub_ctx(tag)
        if tag not in self._known_tags:
            self._sum(sub, "weight")
            self._known_tags.add(tag)
        self._sum(sub, "values")
        return None  # the arbiter cannot see the mean

    def _sum(self, sub: Context, name: str) -> None:
        labels, ranks = _labels(self._ctx), _ranks(self._ctx)
        messages = [sub.guest.get(f"{name}_cipher"), *sub.hosts.get(f"{name}_cipher")]
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
            shards = _shards(len(total), len(ranks))
        for i, rank in enumerate(ranks):
            if error is None:
                start, end = shards[i]
                reply = (start, cipher.to_wire(self.public, total[start:end]))
            else:
                reply = error
            sub.parties[rank].put(f"{name}_shard", reply)
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
        from fate_components.secure_agg.keys import count_secret_keys_in_process

        return {"public_key_bits": self.public.key_bits, "secret_key_objects": count_secret_keys_in_process(),
                "received": self.received}
