"""Secure-aggregation cost per round for 3 sites: plaintext, FATE's mask-based secure aggregation,
naive per-value Paillier (FATE's API as a user would call it), and fate-lung's packed Paillier.

    .venv/bin/python bench/secure_aggregation.py            # 1e5, default model, 1e6 (1e7 extrapolated)
    .venv/bin/python bench/secure_aggregation.py --full     # also measures 1e7 for ours (several minutes)
    .venv/bin/python bench/secure_aggregation.py --workers 1,2,4,8,16   # ours per paillier.workers
    .venv/bin/python bench/secure_aggregation.py --masking   # only ours and its masks: default model, 1e6

Prints one table: seconds per round for client encode+encrypt, arbiter sum, client decrypt+decode,
and bytes sent per site; under each "fate-lung Paillier" row, the pairwise masking (secure_agg/masking.py,
part of ours: its encode+encrypt column includes it) in seconds per site per round and as a share of
ours' round (encode+encrypt + arbiter sum + decrypt+decode). All measured side by side in this run on
this machine, one process, single-threaded; naive Paillier is timed on a sample of values and scaled
linearly (marked "~").
With --workers: only ours, for the default model and 1e6 parameters, per number of worker
processes per site (`paillier.workers`, secure_agg/pool.py), with ratios to 1 worker; counts
above this process's cores are skipped, not simulated.
"""
from __future__ import annotations

import argparse
import os
import pickle
import time

os.environ.setdefault("OMP_NUM_THREADS", "1")

import _harness  # noqa: E402,F401  (puts the project root on sys.path)
import numpy as np  # noqa: E402

SITES = 3
NAIVE_SAMPLE = 300


def _timed(fn):
    t0 = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t0


def bench_plaintext(updates, weights):
    blobs, enc = _timed(lambda: [(u * w).astype(np.float32).tobytes() for u, w in zip(updates, weights)])
    total, agg = _timed(lambda: sum(np.frombuffer(b, dtype=np.float32).astype(np.float64) for b in blobs))
    _, dec = _timed(lambda: total / sum(weights))
    return enc / SITES, agg, dec, len(blobs[0])


def bench_fate_masks(updates, weights):
    from fate.arch.protocol.diffie_hellman import DiffieHellman
    from fate_utils.secure_aggregation_helper import MixAggregate, RandomMix

    # One Diffie-Hellman pair per pair of sites, as FATE's dh_exchange does.
    dh = {(i, j): DiffieHellman() for i in range(SITES) for j in range(SITES) if i != j}
    pubs = {k: d.get_public_key() for k, d in dh.items()}
    mixers = [RandomMix({j: dh[(i, j)].diffie_hellman(pubs[(j, i)]) for j in range(SITES) if j != i}, i)
              for i in range(SITES)]
    mixed, enc = _timed(lambda: [m.mix([u], float(w)) for m, u, w in zip(mixers, updates, weights)])
    size = len(pickle.dumps(mixed[0]))

    def aggregate():
        agg = MixAggregate()
        for m in mixed:
            agg.aggregate(m)
        return agg.finalize(float(sum(weights)))

    result, agg_s = _timed(aggregate)
    assert np.allclose(result[0], sum(u * w for u, w in zip(updates, weights)) / sum(weights), atol=1e-6)
    return enc / SITES, agg_s, 0.0, size


def bench_naive_paillier(n_values, key_bits):
    """One obfuscated encryption per value through FATE's API, no packing; timed on a sample, scaled."""
    from fate.arch.protocol.phe.paillier import evaluator, keygen

    sk, pk, coder = keygen(key_bits)
    sample = np.random.default_rng(0).normal(0, 1, NAIVE_SAMPLE)
    encoded = coder.coder.encode_f64_vec(sample)
    cts, enc = _timed(lambda: [pk.encrypt_encoded(encoded, obfuscate=True) for _ in range(SITES)])
    total, agg = _timed(lambda: evaluator.add(evaluator.add(cts[0], cts[1], pk), cts[2], pk))
    out, dec = _timed(lambda: coder.coder.decode_f64_vec(sk.decrypt_to_encoded(total)))
    assert np.allclose(np.array(out) / SITES, sample)
    scale = n_values / NAIVE_SAMPLE
    return enc / SITES * scale, agg * scale, dec * scale, int(len(pickle.dumps(cts[0])) * scale)


def bench_ours(updates, weights, public, secret):
    from fate_components.secure_agg import cipher
    from fate_components.secure_agg._obfuscation_worker import make_obfuscators, public_base
    from fate_components.secure_agg.packing import PackingSpec, decode_sum, encode_weighted, pack, unpack

    spec = PackingSpec.for_key(public.key_bits)
    h_n = public_base(public.n)
    n_ct = spec.n_plaintexts(len(updates[0]))
    make_obfuscators(public.n, h_n, 1)  # builds the comb table once per key
    obfuscators, pre = _timed(lambda: [make_obfuscators(public.n, h_n, n_ct) for _ in range(SITES)])
    total_w = float(sum(weights))

    masks = _site_masks(public.n)

    def encode_encrypt(i):
        packed = pack(encode_weighted(updates[i], weights[i] / total_w, spec)[0], spec)
        masked = masks[i].apply(packed, "bench/round-0/model", "values")
        return cipher.to_wire(public, cipher.encrypt(public, masked, obfuscators[i]))

    blobs, enc = _timed(lambda: [encode_encrypt(i) for i in range(SITES)])
    total, agg = _timed(lambda: cipher.add_all(public, [cipher.from_wire(public, b, n_ct, f"site {i}")
                                                        for i, b in enumerate(blobs)]))
    decryptor = cipher.Decryptor(public, secret)
    # Each site decrypts one third and the sites exchange the decrypted thirds (see secure_agg/protocol.py).
    shard = total[: -(-len(total) // SITES)]
    _, dec_shard = _timed(lambda: decryptor.decrypt_with_fate(shard))
    plain = decryptor.decrypt_with_fate(total)
    mean, unpack_s = _timed(lambda: decode_sum(unpack(plain, len(updates[0]), spec), spec))
    expected = sum(u * w for u, w in zip(updates, weights)) / total_w
    assert np.max(np.abs(mean - np.clip(expected, -spec.clip, spec.clip))) <= spec.max_abs_error
    return enc / SITES, agg, dec_shard + unpack_s, len(blobs[0]), pre / SITES


def _site_masks(n: int) -> list:
    """Each site's `PairwiseMasks`, its Diffie-Hellman seeds agreed directly (the bench has no channel)."""
    from fate.arch.protocol.diffie_hellman import DiffieHellman

    from fate_components.secure_agg.channel import SiteAddress
    from fate_components.secure_agg.masking import PairwiseMasks

    sites = [SiteAddress(i, "guest" if i == 0 else "host", str(9999 + i)) for i in range(SITES)]
    dh = {(i, j): DiffieHellman() for i in range(SITES) for j in range(SITES) if i != j}
    return [PairwiseMasks(sites, i, {j: dh[(i, j)].diffie_hellman(dh[(j, i)].get_public_key())
                                     for j in range(SITES) if j != i}, n) for i in range(SITES)]


def bench_masking(updates, weights, public) -> float:
    """Seconds one site spends masking its packed plaintexts per round (3 sites: 2 pair masks per ciphertext);
    checks that the masks cancel in the sum mod n."""
    from fate_components.secure_agg.packing import PackingSpec, encode_weighted, pack

    spec = PackingSpec.for_key(public.key_bits)
    masks = _site_masks(public.n)
    total_w = float(sum(weights))
    packed = [pack(encode_weighted(u, w / total_w, spec)[0], spec) for u, w in zip(updates, weights)]
    masked, seconds = _timed(lambda: [m.apply(p, "bench/round-0/model", "values") for m, p in zip(masks, packed)])
    assert [sum(v) % public.n for v in zip(*masked)] == [sum(v) for v in zip(*packed)]
    return seconds / SITES


def _masking_line(mask_s: float, enc: float, agg: float, dec: float) -> str:
    round_s = enc + agg + dec
    return (f"{'':<26}masking (in ours): {mask_s:.3f} s per site per round, {100 * mask_s / round_s:.1f}% of ours' "
            f"round ({round_s:.3f} s)")


def bench_workers(updates, weights, public, secret, workers: int) -> dict[str, float]:
    """One round of ours with `workers` processes per site: what a site's `PaillierPool` does, timed per stage."""
    from fate_components.secure_agg import cipher
    from fate_components.secure_agg._obfuscation_worker import public_base
    from fate_components.secure_agg.packing import PackingSpec, decode_sum, encode_weighted, pack, unpack
    from fate_components.secure_agg.pool import PaillierPool

    spec = PackingSpec.for_key(public.key_bits)
    n_ct = spec.n_plaintexts(len(updates[0]))
    total_w = float(sum(weights))
    pool = PaillierPool(public, secret, public_base(public.n), workers=workers, site="bench")
    masks = _site_masks(public.n)
    try:
        pool.wait_started()   # every process up, its comb table built (once per job) ...
        pool.take(1)          # ... and this process's, which computes them with 1 worker
        pre = enc = 0.0
        blobs = []
        for i in range(SITES):   # one pool stands in for each site's in turn
            _, t = _timed(lambda: pool.fill(n_ct))   # what `request` computes in the background while a site trains
            pre += t

            def encode_encrypt(i=i):
                packed = pack(encode_weighted(updates[i], weights[i] / total_w, spec)[0], spec)
                return cipher.to_wire(public, pool.encrypt(masks[i].apply(packed, "bench/round-0/model", "values")))

            blob, t = _timed(encode_encrypt)
            enc += t
            blobs.append(blob)
        total, agg = _timed(lambda: cipher.add_all(public, [cipher.from_wire(public, b, n_ct, f"site {i}")
                                                            for i, b in enumerate(blobs)]))
        shard = total[: -(-len(total) // SITES)]   # the largest of the three shards
        _, dec = _timed(lambda: pool.decrypt(shard))
        plain = pool.decrypt(total)
    finally:
        pool.close()
    mean, unpack_s = _timed(lambda: decode_sum(unpack(plain, len(updates[0]), spec), spec))
    expected = sum(u * w for u, w in zip(updates, weights)) / total_w
    assert np.max(np.abs(mean - np.clip(expected, -spec.clip, spec.clip))) <= spec.max_abs_error
    return {"precompute": pre / SITES, "encrypt": enc / SITES, "arbiter add": agg, "decrypt": dec + unpack_s,
            "total": enc / SITES + agg + dec + unpack_s}


def main_workers(counts: list[int], key_bits: int) -> int:
    from fate_components.core.learning.model import build_model, count_parameters
    from fate_components.secure_agg.keys import generate_keypair
    from fate_components.secure_agg.pool import available_cores

    public, secret = generate_keypair(key_bits)
    cores = available_cores()
    default_size = count_parameters(build_model())
    weights = [120, 45, 30]
    stages = ("encrypt", "arbiter add", "decrypt", "total")
    print(f"3 sites, Paillier {key_bits}-bit, seconds per round per site (arbiter add: the arbiter's), "
          f"{cores} cores available; (x) = ratio to 1 worker")
    header = f"{'size':<26}{'workers':>8}" + "".join(f"{s + ' s':>20}" for s in stages) + f"{'precompute s':>16}"
    print(header)
    print("-" * len(header))
    for label, n in ((f"default model ({default_size:,})", default_size), ("1e6", 1_000_000)):
        rng = np.random.default_rng(0)
        updates = [rng.normal(0, 0.5, n) for _ in range(SITES)]
        base = None
        for workers in counts:
            if workers > cores:
                print(f"{label:<26}{workers:>8}  skipped: {cores} cores")
                continue
            row = bench_workers(updates, weights, public, secret, workers)
            base = base or row
            cells = "".join(f"{row[s]:>12.3f} ({base[s] / row[s]:>4.2f}x)" for s in stages)
            print(f"{label:<26}{workers:>8}{cells}{row['precompute']:>16.3f}")
    print("encrypt: encode, pack and encrypt with precomputed obfuscators; decrypt: the largest of the three shards, "
          "then decode;")
    print("total: encrypt + arbiter add + decrypt (one round's critical path); precompute: one site's obfuscators, "
          "computed while it trains.")
    return 0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--full", action="store_true", help="also measure ours at 1e7 parameters")
    parser.add_argument("--key-bits", type=int, default=2048)
    parser.add_argument("--workers", help="comma-separated paillier.workers counts to sweep, e.g. 1,2,4,8,16")
    parser.add_argument("--masking", action="store_true", help="only ours and its masking, default model and 1e6")
    args = parser.parse_args(argv)
    if args.workers:
        return main_workers([int(w) for w in args.workers.split(",")], args.key_bits)

    from fate_components.core.learning.model import build_model, count_parameters
    from fate_components.secure_agg.keys import generate_keypair

    public, secret = generate_keypair(args.key_bits)
    default_size = count_parameters(build_model())
    sizes = [("1e5", 100_000), (f"default model ({default_size:,})", default_size), ("1e6", 1_000_000)]
    if args.masking:
        sizes = sizes[1:]
    else:
        sizes.append(("1e7", 10_000_000))
    weights = [120, 45, 30]
    print(f"3 sites, Paillier {args.key_bits}-bit, 1 thread, machine: {os.cpu_count()} cores")
    header = f"{'size':<26}{'method':<22}{'encode+encrypt s':>17}{'arbiter sum s':>15}{'decrypt+decode s':>17}" \
             f"{'bytes/site':>16}{'x float32':>10}"
    print(header)
    print("-" * len(header))
    ours_1e6 = None
    for label, n in sizes:
        rng = np.random.default_rng(0)
        updates = [rng.normal(0, 0.5, n) for _ in range(SITES)]
        rows = []
        if not args.masking:
            rows.append(("plaintext", *bench_plaintext(updates, weights), ""))
            rows.append(("FATE masks", *bench_fate_masks(updates, weights), ""))
            naive = bench_naive_paillier(n, args.key_bits)
            rows.append(("naive Paillier ~", *naive, ""))
        if n <= 1_000_000 or args.full:
            enc, agg, dec, size, pre = bench_ours(updates, weights, public, secret)
            mask_s = bench_masking(updates, weights, public)
            extrapolated = ""
        else:
            scale = n / 1_000_000
            enc, agg, dec, size, pre, mask_s = (v * scale for v in ours_1e6)
            extrapolated = " ~"
        if n == 1_000_000:
            ours_1e6 = (enc, agg, dec, size, pre, mask_s)
        rows.append((f"fate-lung Paillier{extrapolated}", enc, agg, dec, size, f"+{pre:.1f}s precomputed"))
        for method, e, a, d, b, note in rows:
            print(f"{label:<26}{method:<22}{e:>17.3f}{a:>15.3f}{d:>17.3f}{int(b):>16,}{b / (4 * n):>10.2f}  {note}")
        print(_masking_line(mask_s, enc, agg, dec))
        if not args.masking:
            naive_total = naive[0] + naive[2]
            ours_total = enc + dec + pre
            print(f"{'':<26}speed-up of ours over naive per-value Paillier (client, incl. precompute): "
                  f"{naive_total / ours_total:,.0f}x")
    print("~ : scaled linearly from a sample (naive) or from the 1e6 measurement (ours without --full).")
    print("decrypt for ours: one third of the ciphertexts per site (the sites share decrypted thirds).")
    print("masking: a site's pair masks (ChaCha20 keystream, one per other site) added mod n to its packed plaintexts;")
    print("         its Diffie-Hellman seeds are agreed once per job (not timed).")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
