"""FATE's built-in Paillier as used for secure aggregation: real keys, real ciphertexts."""
import os
import random
import signal
import time

import numpy as np
import psutil
import pytest

from fate_components.core.errors import ConfigError, LungError
from fate_components.secure_agg import cipher
from fate_components.secure_agg._obfuscation_worker import make_obfuscators, public_base
from fate_components.secure_agg.keys import PublicKey, SecretKey, WeakKeyError, generate_keypair, seal, unseal
from fate_components.secure_agg.packing import PackingSpec, decode_sum, encode_weighted, pack, unpack
from fate_components.secure_agg.pool import PaillierPool, contiguous_chunks, resolve_workers
from fate_components.secure_agg.protocol import PaillierOptions


@pytest.fixture(scope="module")
def keys():
    return generate_keypair(2048)


@pytest.fixture(scope="module")
def small_keys():
    """A 1024-bit pair (allowed for tests only): the worker tests spawn processes and decrypt, so keep it cheap."""
    return generate_keypair(1024, allow_weak_key=True)


def _children() -> set[int]:
    return {p.pid for p in psutil.Process().children(recursive=True)}


def test_three_site_weighted_mean_through_paillier(keys):
    # Prepare
    public, secret = keys
    spec = PackingSpec.for_key(public.key_bits)
    rng = np.random.default_rng(1)
    updates = [rng.normal(0, 1, 700) for _ in range(3)]
    updates[1][:5] = 7.9
    updates[2][:5] = 0.0
    weights = [10, 30, 60]
    h_n = public_base(public.n)
    # Execute: each site encrypts; the "arbiter" adds with the public key only; a site decrypts.
    blobs = []
    for u, w in zip(updates, weights):
        packed = pack(encode_weighted(u, w / sum(weights), spec)[0], spec)
        cts = cipher.encrypt(public, packed, make_obfuscators(public.n, h_n, len(packed)))
        blobs.append(cipher.to_wire(public, cts))
    vectors = [cipher.from_wire(public, b, len(b) // public.ciphertext_bytes, f"site {i}") for i, b in enumerate(blobs)]
    total = cipher.add_all(public, vectors)
    decrypted = cipher.Decryptor(public, secret).decrypt_with_fate(total)
    got = decode_sum(unpack(decrypted, 700, spec), spec)
    # Assert
    expected = sum(w * u for u, w in zip(updates, weights)) / sum(weights)
    assert np.max(np.abs(got - expected)) <= spec.max_abs_error
    assert all(len(b) == len(vectors[0]) * 512 for b in blobs)


def test_ciphertexts_are_randomised(keys):
    public, _ = keys
    h_n = public_base(public.n)
    a = cipher.encrypt(public, [42], make_obfuscators(public.n, h_n, 1))
    b = cipher.encrypt(public, [42], make_obfuscators(public.n, h_n, 1))
    assert a != b


def test_fast_and_fate_decryption_agree(keys):
    public, secret = keys
    messages = [random.Random(3).getrandbits(2000) for _ in range(20)]
    cts = cipher.encrypt(public, messages, make_obfuscators(public.n, public_base(public.n), 20))
    decryptor = cipher.Decryptor(public, secret)
    assert decryptor.decrypt(cts) == decryptor.decrypt_with_fate(cts) == messages


def test_keys_round_trip_through_bytes(keys):
    public, secret = keys
    public2 = PublicKey.from_bytes(public.to_bytes())
    secret2 = SecretKey.from_bytes(secret.to_bytes(), public2)
    assert public2.n == public.n and secret2.p * secret2.q == public.n


def test_sealed_secret_key_opens_only_with_the_right_secret_and_binding(keys):
    from fate.arch.protocol.diffie_hellman import DiffieHellman

    from fate_components.core.errors import ConfigError

    _, secret = keys
    guest, host, intruder = DiffieHellman(), DiffieHellman(), DiffieHellman()
    shared_guest = guest.diffie_hellman(host.get_public_key())
    shared_host = host.diffie_hellman(guest.get_public_key())
    sealed = seal(shared_guest, secret.to_bytes(), b"guest 9999 -> host 10000")
    assert unseal(shared_host, sealed, b"guest 9999 -> host 10000") == secret.to_bytes()
    assert secret.to_bytes() not in sealed[1]
    with pytest.raises(ConfigError, match="failed authentication"):
        unseal(intruder.diffie_hellman(guest.get_public_key()), sealed, b"guest 9999 -> host 10000")
    with pytest.raises(ConfigError, match="failed authentication"):
        unseal(shared_host, sealed, b"guest 9999 -> host 10001")


def test_weak_key_is_refused_unless_allowed():
    with pytest.raises(WeakKeyError, match="1024 bits refused"):
        generate_keypair(1024)
    public, _ = generate_keypair(1024, allow_weak_key=True)
    assert public.key_bits == 1024


@pytest.mark.parametrize("corrupt, message", [
    (lambda b: b[:-7], "truncated or malformed"),
    (lambda b: b"\xff" * 512 + b[512:], "not a valid Paillier ciphertext"),
    (lambda b: b"\x00" * 512 + b[512:], "not a valid Paillier ciphertext"),
])
def test_corrupted_or_truncated_ciphertext_names_the_site(keys, corrupt, message):
    public, _ = keys
    cts = cipher.encrypt(public, [1, 2], make_obfuscators(public.n, public_base(public.n), 2))
    blob = corrupt(cipher.to_wire(public, cts))
    with pytest.raises(cipher.CiphertextError, match=f"from host 10000 .*{message}|{message}.*"):
        cipher.from_wire(public, blob, 2, "host 10000")
    try:
        cipher.from_wire(public, blob, 2, "host 10000")
    except cipher.CiphertextError as e:
        assert "host 10000" in str(e)


def test_the_pool_precomputes_obfuscators_in_a_worker(keys):
    public, secret = keys
    pool = PaillierPool(public, secret, public_base(public.n), workers=1, site="guest 9999")
    try:
        pool.request(5)
        got = pool.take(7)  # 5 from the worker, 2 computed on demand
    finally:
        pool.close()
    assert len(got) == 7 and len(set(got)) == 7
    assert all(0 < g < public.n_square for g in got)


def test_one_two_and_three_workers_decrypt_the_same_sum_to_the_same_mean(small_keys):
    # Prepare: 3 sites' updates filling 7 ciphertexts (uneven over 2 and 3 workers), then a single ciphertext
    public, secret = small_keys
    spec = PackingSpec.for_key(public.key_bits, max_sites=3)
    h_n = public_base(public.n)
    rng = np.random.default_rng(7)
    n_values = 6 * spec.slots_per_plaintext + 5
    updates = [rng.normal(0, 2, n_values) for _ in range(3)]
    weights = [5, 11, 19]
    plaintexts, means = {}, {}
    # Execute: every site encrypts on the pool, the arbiter adds, the pool decrypts the sum
    for workers in (1, 2, 3):
        pool = PaillierPool(public, secret, h_n, workers=workers, site="guest 9999")
        try:
            for size in (n_values, 1):
                packed = [pack(encode_weighted(u[:size], w / sum(weights), spec)[0], spec)
                          for u, w in zip(updates, weights)]
                pool.request(len(packed[0]))   # half the obfuscators precomputed, the rest on demand
                total = cipher.add_all(public, [pool.encrypt(p) for p in packed])
                plaintexts[workers, size] = pool.decrypt(total)
                means[workers, size] = decode_sum(unpack(plaintexts[workers, size], size, spec), spec)
        finally:
            pool.close()
    # Assert: identical plaintexts and means, and they are the right ones
    for size in (n_values, 1):
        assert plaintexts[1, size] == plaintexts[2, size] == plaintexts[3, size]
        assert np.array_equal(means[1, size], means[2, size]) and np.array_equal(means[1, size], means[3, size])
        expected = sum(w * np.clip(u[:size], -spec.clip, spec.clip) for u, w in zip(updates, weights)) / sum(weights)
        assert np.max(np.abs(means[1, size] - expected)) <= spec.max_abs_error
    assert len(plaintexts[1, n_values]) == 7


def test_contiguous_chunks_tile_the_range_in_order():
    assert contiguous_chunks(7, 3) == [(0, 2), (2, 5), (5, 7)]
    assert contiguous_chunks(1, 3) == [(0, 0), (0, 1), (1, 1)]
    assert contiguous_chunks(0, 2) == [(0, 0), (0, 0)]


def test_the_pool_starts_its_processes_once_and_leaves_none_behind(small_keys):
    # Prepare
    public, secret = small_keys
    before = _children()
    # Execute
    pool = PaillierPool(public, secret, public_base(public.n), workers=2, site="host 10000")
    try:
        pool.wait_started()
        started = _children() - before
        cts = pool.encrypt([1, 2, 3, 4, 5])
        assert pool.decrypt(cts) == [1, 2, 3, 4, 5]
        pool.request(9)
        assert _children() - before == started   # the same processes all job long
    finally:
        pool.close()
    # Assert
    assert len(started) == 2
    assert _children() == before
    assert not any(psutil.pid_exists(pid) and psutil.Process(pid).status() != psutil.STATUS_ZOMBIE for pid in started)


def test_a_killed_worker_gives_a_clear_error_naming_the_site(small_keys):
    # Prepare
    public, secret = small_keys
    before = _children()
    pool = PaillierPool(public, secret, public_base(public.n), workers=2, site="host 10001")
    try:
        cts = pool.encrypt([7, 8, 9])
        # Execute: the out-of-memory killer, say, takes one worker
        os.kill(sorted(_children() - before)[0], signal.SIGKILL)
        # Assert: an error naming the site, not a hang
        with pytest.raises(LungError, match="Secure aggregation failed at host 10001: a Paillier worker process "
                                            "exited unexpectedly"):
            deadline = time.monotonic() + 10   # the executor notices the death within a moment; until then work goes on
            while time.monotonic() < deadline:
                pool.decrypt(cts)
    finally:
        pool.close()
    assert _children() == before


def test_auto_workers_share_the_cores_among_co_located_sites(monkeypatch):
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(32)))
    assert [resolve_workers("auto", sites) for sites in (1, 3, 40)] == [16, 10, 1]
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1})
    assert resolve_workers("auto", 3) == 1       # this machine's standalone demo: one worker per site
    assert resolve_workers(4, 3) == 4


@pytest.mark.parametrize("conf, message", [
    ({"obfuscation_workers": 2}, r"unknown paillier option\(s\) \['obfuscation_workers'\]; known: .*; "
                                 r"obfuscation_workers was renamed workers"),
    ({"workers": -1}, "paillier.workers must be \"auto\" or a whole number >= 0, not -1"),
    ({"workers": "many"}, "not 'many'"),
    ({"workers": True}, "not True"),
])
def test_bad_workers_settings_are_refused(conf, message):
    with pytest.raises(ConfigError, match=message):
        PaillierOptions.from_dict(conf)


def test_secret_key_census_finds_a_bare_native_key():
    # Positive control for the arbiter's audit: a fate_utils key held anywhere is found.
    from fate_components.secure_agg.keys import count_secret_keys_in_process

    before = count_secret_keys_in_process()
    _, secret = generate_keypair(1024, allow_weak_key=True)
    holder = [secret.fate_sk.sk]
    del secret
    assert count_secret_keys_in_process() >= before + 1
    assert holder
