"""The Paillier protocol and the pre-round checks, run whole (guest, two hosts, arbiter) over the in-memory channel.

Real keys (1024 bits, allowed for tests only), real ciphertexts, real Diffie-Hellman; only the
transport is in memory, and its record of every message is what the traffic assertions read.
"""
from __future__ import annotations

import numpy as np
import pytest
from torch import nn

from fate_components.core.errors import ConfigError, LungError
from fate_components.core.learning.signature import model_signature
from fate_components.secure_agg.channel import FederationError
from fate_components.secure_agg.checks import agree_min, arbiter_check, site_check
from fate_components.secure_agg.memory_channel import ChannelTimeout, MemoryFederation, run_parties
from fate_components.secure_agg.packing import PackingSpec
from fate_components.secure_agg.protocol import PaillierClient, PaillierOptions, PaillierServer

GUEST, HOST_B, HOST_C, ARBITER = "guest 9999", "host 10000", "host 10001", "arbiter 9999"
SITES = (GUEST, HOST_B, HOST_C)
OPTIONS = PaillierOptions(key_bits=1024, allow_weak_key=True, workers=0)   # workers: tested on their own below
SPEC = PackingSpec.for_key(1024, max_sites=3)      # what every client builds for three sites
FLOAT32_ROUNDING = SPEC.clip * 2.0 ** -24          # the client hands back float32
CIPHERTEXT_BYTES = 256                             # an integer below n^2 for a 1024-bit n


def run_federation(fed: MemoryFederation, exchanges: dict[str, list[tuple[str, list[np.ndarray], float]]],
                   options: PaillierOptions = OPTIONS) -> dict:
    """Every site sets up, then runs its exchanges (round i under its own tag), while the arbiter sums them.

    Returns label -> (client, [means per exchange]) for the sites, the server for the arbiter, or the exception.
    """
    def site(label: str):
        def task():
            channel = fed.channel(label)
            client = PaillierClient(options).setup(channel)
            try:
                return client, [client.weighted_mean(channel.sub(f"round-{i}"), tag, arrays, weight)
                                for i, (tag, arrays, weight) in enumerate(exchanges[label])]
            finally:
                client.close()
        return task

    def arbiter():
        channel = fed.channel(ARBITER)
        server = PaillierServer.connect(channel, options)
        for i, (tag, _, _) in enumerate(exchanges[GUEST]):
            assert server.aggregate(channel.sub(f"round-{i}"), tag) is None
        return server

    return run_parties({**{label: site(label) for label in SITES}, ARBITER: arbiter})


def _updates(sizes: list[tuple[int, ...]], seed: int) -> dict[str, list[np.ndarray]]:
    rng = np.random.default_rng(seed)
    return {label: [rng.normal(0, 2, size).astype(np.float32) for size in sizes] for label in SITES}


def _same_error_everywhere(results: dict, expected_type: type = LungError) -> str:
    errors = {label: results[label] for label in (*SITES, ARBITER)}
    assert all(isinstance(e, expected_type) for e in errors.values()), errors
    messages = {str(e) for e in errors.values()}
    assert len(messages) == 1, messages
    return messages.pop()


def test_weighted_mean_with_uneven_weights_matches_numpy_at_every_site():
    # Prepare: two layers, very uneven sample counts, some values beyond the clip bound
    fed = MemoryFederation()
    updates = _updates([(3, 4, 5), (7,)], seed=0)
    updates[HOST_B][0][0, 0, :] = 11.0
    weights = {GUEST: 7.0, HOST_B: 250.0, HOST_C: 43.0}
    exchanges = {label: [("model", updates[label], weights[label])] * 2 for label in SITES}
    # Execute: two rounds of the same tag
    results = run_federation(fed, exchanges)
    # Assert
    assert not any(isinstance(r, BaseException) for r in results.values()), results
    total = sum(weights.values())
    for layer, shape in enumerate([(3, 4, 5), (7,)]):
        clipped = {label: np.clip(updates[label][layer].astype(np.float64), -SPEC.clip, SPEC.clip) for label in SITES}
        expected = sum(weights[label] * clipped[label] for label in SITES) / total
        for label in SITES:
            for mean in results[label][1]:
                got = mean[layer]
                assert got.shape == shape and got.dtype == np.float32
                assert np.max(np.abs(got - expected)) <= SPEC.max_abs_error + FLOAT32_ROUNDING
    guest_means = results[GUEST][1][0]
    for label in SITES:     # every site ends the round with the bit-identical model
        assert all(np.array_equal(a, b) for a, b in zip(results[label][1][0], guest_means))
    assert results[HOST_B][0].last["model"].clipped == 5
    assert results[GUEST][0].last["model"].clipped == 0


def test_shards_line_up_for_lengths_not_divisible_by_the_sites_and_shorter_than_them():
    # Prepare: 1 value (one ciphertext for three sites), 4 and 6 ciphertexts, and a ragged length
    fed = MemoryFederation()
    per_ct = SPEC.slots_per_plaintext
    lengths = {"one": 1, "two_cts": per_ct + 1, "four_cts": 4 * per_ct, "ragged": 5 * per_ct + 3}
    updates = {label: {tag: np.random.default_rng(i).uniform(-3, 3, n).astype(np.float32)
                       for tag, n in lengths.items()} for i, label in enumerate(SITES)}
    weights = {GUEST: 2.0, HOST_B: 3.0, HOST_C: 5.0}
    exchanges = {label: [(tag, [updates[label][tag]], weights[label]) for tag in lengths] for label in SITES}
    # Execute
    results = run_federation(fed, exchanges)
    # Assert: right means everywhere ...
    assert not any(isinstance(r, BaseException) for r in results.values()), results
    for i, tag in enumerate(lengths):
        expected = sum(weights[label] * updates[label][tag].astype(np.float64) for label in SITES) / 10.0
        for label in SITES:
            assert np.max(np.abs(results[label][1][i][0] - expected)) <= SPEC.max_abs_error + FLOAT32_ROUNDING
    # ... and the arbiter's shards tile the ciphertexts in site order, empty ones included
    for i, (tag, n) in enumerate(lengths.items()):
        n_ct = SPEC.n_plaintexts(n)
        shards = [m.value for label in SITES for m in fed.between(ARBITER, label)
                  if m.name == "values_shard" and m.path == (f"round-{i}", tag)]
        starts = [start for start, _ in shards]
        sizes = [len(blob) // CIPHERTEXT_BYTES for _, blob in shards]
        assert sum(sizes) == n_ct and starts == [sum(sizes[:k]) for k in range(3)]
        if n == 1:
            assert sorted(sizes) == [0, 0, 1]


def test_the_total_weight_travels_once_per_tag_and_a_changed_weight_is_refused():
    # Prepare
    fed = MemoryFederation()
    updates = _updates([(10,)], seed=1)
    loss = {label: [np.array([0.5 + i])] for i, label in enumerate(SITES)}
    weights = {GUEST: 10.0, HOST_B: 20.0, HOST_C: 30.0}
    exchanges = {label: [("model", updates[label], weights[label]), ("val_loss", loss[label], 1.0),
                         ("model", updates[label], weights[label])] for label in SITES}
    # Execute
    results = run_federation(fed, exchanges)
    # Assert: one weight exchange per tag, one values exchange per call
    assert not any(isinstance(r, BaseException) for r in results.values()), results
    for label in SITES:
        names = [m.name for m in fed.between(label, ARBITER)]
        assert names.count("weight_cipher") == 2 and names.count("values_cipher") == 3
    np.testing.assert_allclose(results[HOST_C][1][1][0], [1.5], atol=SPEC.max_abs_error)
    # Execute: the next round, host 10000 claims another sample count for "model"
    client, _ = results[HOST_B]
    sent = len(fed.messages)
    with pytest.raises(ConfigError, match="weight of exchange 'model' changed from 20.0 to 21.0"):
        client.weighted_mean(fed.channel(HOST_B).sub("round-3"), "model", updates[HOST_B], 21.0)
    assert len(fed.messages) == sent      # refused before anything left the site


def test_hosts_talk_only_to_the_guest_and_the_arbiter_which_sees_no_secret():
    # Prepare
    fed = MemoryFederation()
    updates = _updates([(50,)], seed=2)
    exchanges = {label: [("model", updates[label], 1.0 + i)] for i, label in enumerate(SITES)}
    # Execute
    results = run_federation(fed, exchanges)
    # Assert: the guest relays; no host-to-host message in setup or in the round
    assert not any(isinstance(r, BaseException) for r in results.values()), results
    pairs = {(m.sender, m.receiver) for m in fed.messages}
    assert pairs == {(GUEST, HOST_B), (GUEST, HOST_C), (HOST_B, GUEST), (HOST_C, GUEST),
                     *((s, ARBITER) for s in SITES), *((ARBITER, s) for s in SITES)}
    assert {m.name for m in fed.messages if m.receiver == ARBITER} == {"public_key", "weight_cipher", "values_cipher"}
    assert {m.name for m in fed.between(HOST_B, GUEST)} == {"dh_public_reply", "mask_dh_public", "weight_plain",
                                                           "values_plain"}
    # ... and no factor of the key crosses the wire in the clear
    secret = results[GUEST][0]._secret
    assert results[HOST_C][0]._secret.p in (secret.p, secret.q)
    for factor in (secret.p, secret.q):
        for encoding in (factor.to_bytes(64, "big"), str(factor).encode(), format(factor, "x").encode()):
            assert not any(encoding in m.data for m in fed.messages)


def test_two_workers_per_site_give_the_means_of_one_bit_for_bit():
    # Prepare: a length that splits unevenly over two workers, and a second tag
    per_ct = SPEC.slots_per_plaintext
    updates = _updates([(5 * per_ct + 3,), (4,)], seed=5)
    weights = {GUEST: 12.0, HOST_B: 30.0, HOST_C: 5.0}
    exchanges = {label: [("model", updates[label], weights[label]), ("val_loss", updates[label][1:], 1.0)] * 2
                 for label in SITES}
    # Execute
    runs = {workers: run_federation(MemoryFederation(), exchanges, PaillierOptions(key_bits=1024, allow_weak_key=True,
                                                                                   workers=workers))
            for workers in (1, 2)}
    # Assert: the same float32 means, bit for bit, at every site and in every exchange
    for results in runs.values():
        assert not any(isinstance(r, BaseException) for r in results.values()), results
    assert {results[label][0].workers for results in runs.values() for label in SITES} == {1, 2}
    for label in SITES:
        one, two = runs[1][label][1], runs[2][label][1]
        assert len(one) == len(two) == 4
        for means_one, means_two in zip(one, two):
            assert all(np.array_equal(a, b) and a.dtype == np.float32 for a, b in zip(means_one, means_two))


@pytest.mark.parametrize("tamper, expected", [
    (lambda m: (m[0] + 1, m[1]), "sites sent different numbers of ciphertexts: {'guest 9999': 2, 'host 10000': 2, "
                                 "'host 10001': 3}"),
    (lambda m: "not a ciphertext", "sites sent different numbers of ciphertexts: {'guest 9999': 2, 'host 10000': 2, "
                                   "'host 10001': None}"),
])
def test_a_bad_message_from_one_site_stops_every_party_with_one_message_naming_it(tamper, expected):
    # Prepare: host 10001's update is rewritten in transit
    fed = MemoryFederation()
    fed.tamper(HOST_C, "values_cipher", tamper)
    updates = _updates([(SPEC.slots_per_plaintext + 1,)], seed=3)
    exchanges = {label: [("model", updates[label], 1.0)] for label in SITES}
    # Execute
    results = run_federation(fed, exchanges)
    # Assert
    assert _same_error_everywhere(results) == f"Secure aggregation failed: {expected}"


@pytest.mark.parametrize("corrupt, expected", [
    (lambda blob: blob[:-5], "ciphertext message from host 10000 is truncated or malformed: 507 bytes, expected "
                             "2 ciphertexts of 256 bytes"),
    (lambda blob: b"\xff" * 256 + blob[256:], "ciphertext 0 from host 10000 is not a valid Paillier ciphertext"),
    (lambda blob: blob[:256] + b"\x00" * 256, "ciphertext 1 from host 10000 is not a valid Paillier ciphertext"),
])
def test_a_corrupt_ciphertext_gives_every_party_the_clear_error(corrupt, expected):
    # Prepare: host 10000's two ciphertexts are damaged in transit
    fed = MemoryFederation()
    fed.tamper(HOST_B, "values_cipher", lambda m: (m[0], corrupt(m[1])))
    updates = _updates([(SPEC.slots_per_plaintext + 1,)], seed=4)
    exchanges = {label: [("model", updates[label], 1.0)] for label in SITES}
    # Execute
    results = run_federation(fed, exchanges)
    # Assert
    assert _same_error_everywhere(results).startswith(f"Secure aggregation failed: {expected}")


# -- the pre-round check -------------------------------------------------------------------------------------------

NAMES = {GUEST: "hospital_a", HOST_B: "hospital_b", HOST_C: "hospital_c"}


def _payload(width: int = 4, patch: int = 32, rounds: int = 5, dp_error: str | None = None) -> dict:
    return {"signature": model_signature(nn.Linear(3, width)), "patch_spec": {"size_mm": patch},
            "schedule": {"rounds": rounds, "aggregation": "paillier"}, "dp_error": dp_error}


def _run_check(fed: MemoryFederation, payloads: dict[str, dict]) -> dict:
    tasks = {label: (lambda label=label: site_check(fed.channel(label), NAMES[label], payloads[label]))
             for label in SITES}
    return run_parties({**tasks, ARBITER: lambda: arbiter_check(fed.channel(ARBITER))})


@pytest.mark.parametrize("odd, expected", [
    (_payload(width=5), "Secure aggregation failed: parameter size mismatch at 'weight': hospital_a (9999) (4, 3) "
                        "vs hospital_c (10001) (5, 3)"),
    (_payload(patch=48), "Site check failed: patch/normalisation settings differ: hospital_a (9999) "
                         "{'size_mm': 32} vs hospital_c (10001) {'size_mm': 48}; every site must use the same values"),
    (_payload(rounds=6), "Site check failed: training schedule differ"),
    (_payload(width=5, dp_error="max_epsilon 0.1 is spent before round 1"),
     "Differential privacy check failed at hospital_c (10001): max_epsilon 0.1 is spent before round 1"),
])
def test_the_pre_round_check_gives_every_party_the_same_verdict(odd, expected):
    # Prepare: hospital_c differs in one way
    fed = MemoryFederation()
    # Execute
    results = _run_check(fed, {GUEST: _payload(), HOST_B: _payload(), HOST_C: odd})
    # Assert
    assert _same_error_everywhere(results, FederationError).startswith(expected)


def test_the_pre_round_check_passes_when_the_sites_agree():
    fed = MemoryFederation()
    results = _run_check(fed, {label: _payload() for label in SITES})
    assert results == dict.fromkeys((*SITES, ARBITER))
    assert [m.value for m in fed.messages if m.name == "verdict"] == [None] * 3


def test_agree_min_gives_every_site_the_minimum_without_the_arbiter():
    # Prepare
    fed = MemoryFederation()
    values = {GUEST: 7, HOST_B: 3, HOST_C: 5}
    # Execute: the arbiter takes no part; were it needed, a site would time out
    results = run_parties({label: (lambda label=label: agree_min(fed.channel(label), "dp_rounds", values[label]))
                           for label in SITES})
    # Assert
    assert results == dict.fromkeys(SITES, 3)
    assert not [m for m in fed.messages if ARBITER in (m.sender, m.receiver)]
    assert {(m.sender, m.receiver) for m in fed.messages} == {(HOST_B, GUEST), (HOST_C, GUEST), (GUEST, HOST_B),
                                                               (GUEST, HOST_C)}


def test_a_missing_party_fails_with_a_timeout_naming_the_message():
    fed = MemoryFederation(timeout=0.2)
    expected = "host 10000 waited 0.2 s for 'verdict' from arbiter 9999 under site_check"
    with pytest.raises(ChannelTimeout, match=expected):
        site_check(fed.channel(HOST_B), "hospital_b", _payload())


def test_standalone_fate_counts_every_site_as_co_located(tmp_path):
    # FATE standalone runs every party under one FATE-Flow, so workers="auto" shares this machine's cores among 3 sites
    import uuid

    from fate.arch.context import create_context

    from fate_components.components._federation import _colocated_sites

    parties = [("guest", "9999"), ("host", "10000"), ("host", "10001"), ("arbiter", "9999")]
    ctx = create_context(local_party=parties[1], parties=parties, federation_session_id=str(uuid.uuid4()),
                         computing_conf={"computing.standalone.data_dir": str(tmp_path)})
    assert _colocated_sites(ctx) == 3
