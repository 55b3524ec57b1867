"""Pairwise masks under the Paillier encryption (secure_agg/masking.py), over the in-memory federation.

Real Diffie-Hellman, real 1024-bit Paillier (allowed for tests only); the guest's secret key plays
the colluding hospital's.
"""
from __future__ import annotations

import numpy as np
import pytest

from fate_components.core.errors import LungError
from fate_components.secure_agg import cipher
from fate_components.secure_agg.masking import PairwiseMasks
from fate_components.secure_agg.memory_channel import MemoryFederation, run_parties
from fate_components.secure_agg.packing import unpack

from test_secure_agg_protocol import ARBITER, GUEST, HOST_B, HOST_C, SITES, SPEC, run_federation

N_1024 = 3 * (1 << 1022) + 1   # an odd 1024-bit modulus: the masks need n only, not a key


def _agree(fed: MemoryFederation, n: int = N_1024) -> dict[str, PairwiseMasks]:
    results = run_parties({label: (lambda label=label: PairwiseMasks.agree(fed.channel(label), n)) for label in SITES})
    assert all(isinstance(r, PairwiseMasks) for r in results.values()), results
    return results


@pytest.fixture
def no_masks(monkeypatch):
    """Masking off, as the e2e wiretap's test-only hook does it: every site sends its plaintexts unmasked."""
    monkeypatch.setattr(PairwiseMasks, "apply", lambda self, plaintexts, exchange_id, name: list(plaintexts))


def test_masks_cancel_mod_n_and_the_sum_is_exact():
    # Prepare
    fed = MemoryFederation()
    masks = _agree(fed)
    rng = np.random.default_rng(0)
    plain = {label: [int(v) for v in rng.integers(0, 2**62, 40)] for label in SITES}
    # Execute
    masked = {label: masks[label].apply(plain[label], "job/round-0/model", "values") for label in SITES}
    # Assert: each site's masked values differ from its own, all lie in [0, n), and their sum mod n is the true sum
    for label in SITES:
        assert all(0 <= m < N_1024 for m in masked[label])
        assert not any(m == p for m, p in zip(masked[label], plain[label]))
    sums = [sum(vals) % N_1024 for vals in zip(*masked.values())]
    assert sums == [sum(vals) for vals in zip(*plain.values())]
    # Hosts talked only to the guest, which relayed their public values
    assert {(m.sender, m.receiver) for m in fed.messages} == {(HOST_B, GUEST), (HOST_C, GUEST), (GUEST, HOST_B),
                                                               (GUEST, HOST_C)}


def test_no_mask_repeats_across_rounds_tags_exchanges_pairs_or_jobs_and_both_sides_of_a_pair_agree():
    # Prepare
    masks = _agree(MemoryFederation())
    masks_other_job = _agree(MemoryFederation())
    exchanges = [(f"job/round-{r}/{tag}", name) for r in range(3) for tag in ("model", "val_loss")
                 for name in ("values", "weight")]
    index = {label: i for i, label in enumerate(SITES)}
    # Execute
    streams = {}
    for a, b in ((GUEST, HOST_B), (GUEST, HOST_C), (HOST_B, HOST_C)):
        for exchange_id, name in exchanges:
            mine = masks[a].pair_mask(index[b], exchange_id, name, 6)
            assert mine == masks[b].pair_mask(index[a], exchange_id, name, 6), (a, b, exchange_id, name)
            streams[(a, b, exchange_id, name)] = mine
        streams[(a, b, "other job")] = masks_other_job[a].pair_mask(index[b], *exchanges[0], 6)
    # Assert: 3 pairs x (12 exchanges + another job's first) x 6 ciphertexts, every mask distinct and below n
    values = [v for stream in streams.values() for v in stream]
    assert len(values) == 3 * 13 * 6 and len(set(values)) == len(values)
    assert all(0 <= v < N_1024 for v in values)
    # spread over all of [0, n): a third of [0, n) needs the top bit; the mean of 234 uniform draws is 0.5 +- 0.02
    assert max(v.bit_length() for v in values) == N_1024.bit_length()
    assert abs(np.mean([v / N_1024 for v in values]) - 0.5) < 0.1


def test_masking_one_exchange_twice_is_refused():
    masks = _agree(MemoryFederation())
    masks[GUEST].apply([1, 2], "job/round-0/model", "values")
    with pytest.raises(LungError, match="exchange 'values' under 'job/round-0/model' was masked twice"):
        masks[GUEST].apply([1, 2], "job/round-0/model", "values")


def _exchanges(seed: int) -> tuple[dict, dict]:
    rng = np.random.default_rng(seed)
    per_ct = SPEC.slots_per_plaintext
    updates = {label: [rng.uniform(-3, 3, 4 * per_ct + 7).astype(np.float32), rng.uniform(-1, 1, 5).astype(np.float32)]
               for label in SITES}
    weights = {GUEST: 17.0, HOST_B: 40.0, HOST_C: 9.0}
    return updates, {label: [("model", updates[label], weights[label]), ("val_loss", updates[label][1:], 1.0),
                             ("model", updates[label], weights[label])] for label in SITES}


def _means(results: dict) -> dict:
    assert not any(isinstance(r, BaseException) for r in results.values()), results
    return {label: results[label][1] for label in SITES}


def test_masked_means_equal_the_unmasked_ones_bit_for_bit(monkeypatch):
    # Prepare
    _, exchanges = _exchanges(seed=1)
    # Execute
    masked = _means(run_federation(MemoryFederation(), exchanges))
    with monkeypatch.context() as m:
        m.setattr(PairwiseMasks, "apply", lambda self, plaintexts, exchange_id, name: list(plaintexts))
        unmasked = _means(run_federation(MemoryFederation(), exchanges))
    # Assert: every site, every exchange, every array, bit for bit
    for label in SITES:
        assert len(masked[label]) == len(unmasked[label]) == 3
        for a, b in zip(masked[label], unmasked[label]):
            assert all(np.array_equal(x, y) and x.dtype == np.float32 for x, y in zip(a, b))


def _colluding_guest_decrypts(fed: MemoryFederation, results: dict, host: str) -> list[np.ndarray]:
    """The guest's secret key on every values ciphertext that `host` sent the arbiter: decoded as that host's values."""
    client = results[GUEST][0]
    decryptor = cipher.Decryptor(client.public, client._secret)
    decoded = []
    for message in fed.between(host, ARBITER):
        if message.name != "values_cipher":
            continue
        count, blob = message.value
        plain = decryptor.decrypt(cipher.from_wire(client.public, blob, count, host))
        decoded.append(unpack(plain, count * SPEC.slots_per_plaintext, SPEC))
    return decoded


def _windows_recovered(codes: np.ndarray, values: np.ndarray, fraction: float) -> int:
    """How many aligned 8-value windows of `values` the slot codes give back within the fixed-point error."""
    decoded = codes[:values.size] / 2.0 ** SPEC.precision_bits / fraction - SPEC.clip
    close = np.abs(decoded - values.astype(np.float64)) <= 2.0 ** -SPEC.precision_bits / fraction
    return int(sum(close[i:i + 8].all() for i in range(0, values.size - 7, 8)))


@pytest.mark.parametrize("masked", [True, False], ids=["masked", "control: masks off"])
def test_a_colluding_site_with_the_secret_key_cannot_read_a_hosts_masked_update(masked, request):
    # Prepare: the guest holds the secret key; the arbiter hands it what host 10000 sent
    if not masked:
        request.getfixturevalue("no_masks")
    updates, exchanges = _exchanges(seed=2)
    fed = MemoryFederation()
    results = run_federation(fed, exchanges)
    _means(results)
    fraction = 40.0 / (17.0 + 40.0 + 9.0)
    values = updates[HOST_B][0]
    windows = values.size // 8
    # Execute
    decoded = _colluding_guest_decrypts(fed, results, HOST_B)
    # Assert: masked, no window of the host's model update comes back; unmasked, every window does
    assert len(decoded) == 3          # model, val_loss, model
    for codes in (decoded[0], decoded[2]):
        assert _windows_recovered(codes, values, fraction) == (0 if masked else windows)


def test_both_sites_of_a_pair_log_one_fingerprint_and_a_substituted_public_value_changes_them():
    from fate.arch.protocol.diffie_hellman import DiffieHellman

    # Prepare: an honest run, and a run where the guest swaps host 10001's public value for host 10000 with its own
    honest = _agree(MemoryFederation())
    fed = MemoryFederation()
    fed.tamper(GUEST, "mask_dh_relay", lambda relay: {**relay, 2: DiffieHellman().get_public_key()} if 2 in relay
               else relay)
    attacked = _agree(fed)
    # Assert: honest pairs agree; the attacked pair's fingerprints differ (its masks no longer cancel)
    for a, b in ((GUEST, HOST_B), (GUEST, HOST_C), (HOST_B, HOST_C)):
        assert honest[a].fingerprints[b] == honest[b].fingerprints[a]
    assert attacked[HOST_B].fingerprints[HOST_C] != attacked[HOST_C].fingerprints[HOST_B]
    assert attacked[GUEST].fingerprints[HOST_B] == attacked[HOST_B].fingerprints[GUEST]


def test_masks_that_do_not_cancel_stop_every_site_at_the_first_exchange_naming_the_fingerprints():
    from fate.arch.protocol.diffie_hellman import DiffieHellman

    # Prepare: the guest replaces host 10001's public value on its way to host 10000
    fed = MemoryFederation(timeout=5)
    fed.tamper(GUEST, "mask_dh_relay", lambda relay: {**relay, 2: DiffieHellman().get_public_key()} if 2 in relay
               else relay)
    _, exchanges = _exchanges(seed=3)
    # Execute
    results = run_federation(fed, exchanges)
    # Assert: every site refuses the garbage total weight before sending its update
    for label in SITES:
        assert isinstance(results[label], LungError), results[label]
        assert "the pairwise masks did not cancel" in str(results[label]), results[label]
        assert "fingerprints" in str(results[label])
    assert not [m for m in fed.messages if m.name == "values_cipher"]
