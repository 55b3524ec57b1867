import numpy as np
import pytest

from fate_components.core.errors import ConfigError
from fate_components.secure_agg.packing import PackingSpec, decode_sum, encode_weighted, pack, unpack

SPEC = PackingSpec()


def _aggregate(updates, weights, spec=SPEC):
    total = sum(weights)
    packed = [pack(encode_weighted(u, w / total, spec)[0], spec) for u, w in zip(updates, weights)]
    summed = [sum(col) for col in zip(*packed)]
    return decode_sum(unpack(summed, len(updates[0]), spec), spec)


def test_weighted_mean_of_three_sites_within_the_documented_error():
    # Prepare: negatives, zeros, large magnitudes near the clip bound
    rng = np.random.default_rng(0)
    updates = [rng.normal(0, 2, 5000) for _ in range(3)]
    for u in updates:
        u[:10] = 0.0
        u[10:20] = SPEC.clip - 1e-9
        u[20:30] = -SPEC.clip + 1e-9
    weights = [120, 45, 3]
    # Execute
    got = _aggregate(updates, weights)
    # Assert
    expected = sum(w * np.clip(u, -SPEC.clip, SPEC.clip) for u, w in zip(updates, weights)) / sum(weights)
    assert np.max(np.abs(got - expected)) <= SPEC.max_abs_error


def test_values_beyond_the_clip_bound_are_clipped_and_counted():
    codes, clipped = encode_weighted(np.array([0.0, 9.0, -100.0, np.inf, np.nan]), 1.0, SPEC)
    assert clipped == 4
    decoded = decode_sum(codes.astype(np.float64), SPEC)
    np.testing.assert_allclose(decoded[:4], [0.0, 8.0, -8.0, 8.0], atol=1e-6)


def test_slot_layout_fits_the_key():
    spec = PackingSpec.for_key(2048)
    assert spec.slot_bits * spec.slots_per_plaintext <= 2046
    assert spec.slots_per_plaintext == 2046 // (4 + 20 + 4 + 1) == 70   # clip 8, 20 bits, 16 sites
    # The largest possible slot sum must not carry into the next slot.
    worst = [pack(np.full(spec.slots_per_plaintext, int(2 * spec.clip * 2 ** spec.precision_bits) // spec.max_sites
                          + 1, dtype=np.uint64), spec)[0]] * spec.max_sites
    assert sum(worst).bit_length() <= 2046


@pytest.mark.parametrize("kwargs, message", [({"precision_bits": 4}, "precision_bits"), ({"clip": 0}, "clip"),
                                             ({"max_sites": 1}, "max_sites"),
                                             ({"plaintext_bits": 20}, "cannot hold")])
def test_bad_packing_options(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        PackingSpec(**kwargs)
