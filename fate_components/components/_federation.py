"""FATE-side implementations of the core's aggregation seam, plus the pre-round signature check."""
from __future__ import annotations

import logging

import numpy as np
from fate.arch import Context
from fate.arch.protocol.secure_aggregation import SecureAggregatorClient, SecureAggregatorServer

from fate_components.core.errors import LungError
from fate_components.core.learning.signature import signature_mismatch

AGGREGATION_TAGS = ("model", "val_loss")
logger = logging.getLogger(__name__)


class FederationError(LungError):
    """A federation-level failure: parties disagree, a party is missing, or a check failed."""


def _site_ranks(ctx: Context) -> list[int]:
    return [ctx.guest.rank, *ctx.hosts.ranks]


class SecAggClient:
    """FATE's pairwise-mask secure aggregation (Diffie-Hellman seeded masks cancel in the sum).

    With `plaintext=True` it is FATE's mock mode: updates travel in the clear (debugging only).
    """

    def __init__(self, plaintext: bool = False) -> None:
        self._plaintext = plaintext
        self._clients: dict[str, SecureAggregatorClient] = {}

    def setup(self, ctx: Context) -> "SecAggClient":
        for tag in AGGREGATION_TAGS:
            client = SecureAggregatorClient(prefix=f"lung_{tag}", is_mock=self._plaintext)
            client.dh_exchange(ctx.sub_ctx(f"dh_{tag}"), _site_ranks(ctx))
            self._clients[tag] = client
        return self

    def weighted_mean(self, round_ctx: Context, tag: str, arrays: list[np.ndarray], weight: float) -> list[np.ndarray]:
        # fate_utils' mixer takes float64 arrays of rank >= 0 only.
        as64 = [np.asarray(a, dtype=np.float64) for a in arrays]
        if self._plaintext:
            as64 = [a * weight for a in as64]  # FATE's mock mode divides the sum by the total weight only
        out = self._clients[tag].secure_aggregate(round_ctx.sub_ctx(tag), as64, weight)
        return [np.asarray(o, dtype=np.float32).reshape(a.shape) for o, a in zip(out, arrays)]

    def close(self) -> None:
        pass


class SecAggServer:
    def __init__(self, ctx: Context, plaintext: bool = False) -> None:
        self._servers = {tag: SecureAggregatorServer(_site_ranks(ctx), prefix=f"lung_{tag}", is_mock=plaintext)
                         for tag in AGGREGATION_TAGS}

    def aggregate(self, round_ctx: Context, tag: str) -> list[np.ndarray] | None:
        return self._servers[tag].secure_aggregate(round_ctx.sub_ctx(tag))


AGGREGATIONS = ("paillier", "secagg", "plaintext")


def make_client(aggregation: str, options: dict):
    if aggregation == "paillier":
        from ._paillier import PaillierClient, PaillierOptions

        return PaillierClient(PaillierOptions.from_dict(options.get("paillier")))
    return SecAggClient(plaintext=aggregation == "plaintext")


def make_server(aggregation: str, options: dict, ctx: Context):
    if aggregation == "paillier":
        from ._paillier import PaillierOptions, PaillierServer

        return PaillierServer(ctx, PaillierOptions.from_dict(options.get("paillier")))
    return SecAggServer(ctx, plaintext=aggregation == "plaintext")


def check_aggregation(aggregation: str, allow_plaintext: bool) -> None:
    """Plaintext aggregation shows every site's update to the arbiter: refused unless asked for explicitly."""
    if aggregation not in AGGREGATIONS:
        raise FederationError(f"aggregation {aggregation!r} is not one of {AGGREGATIONS}")
    if aggregation == "plaintext":
        if not allow_plaintext:
            raise FederationError("aggregation 'plaintext' sends every hospital's model update to the coordinator "
                                  "in the clear; it is for debugging only. Set allow_plaintext=true to use it anyway")
        logger.warning("!!! PLAINTEXT AGGREGATION: the coordinator sees every hospital's model update. "
                       "Debugging only; never use with patient data. !!!")


def _party_label(name: str, party_id: str) -> str:
    return f"{name} ({party_id})"


def site_check(ctx: Context, site_name: str, payload: dict) -> None:
    """Send this site's model signature and settings to the arbiter; raise if it reports a mismatch."""
    check_ctx = ctx.sub_ctx("site_check")
    check_ctx.arbiter.put("site_info", {"site_name": site_name, **payload})
    verdict = check_ctx.arbiter.get("verdict")
    if verdict:
        raise FederationError(verdict)


def agree_min(ctx: Context, name: str, value: int) -> int:
    """The sites (never the arbiter) agree on the minimum of their `value`s: hosts tell the guest, it tells them."""
    sub = ctx.sub_ctx(f"agree_{name}")
    if ctx.is_on_guest:
        agreed = min([int(value), *(int(v) for v in sub.hosts.get(name))])
        sub.hosts.put(f"{name}_agreed", agreed)
        return agreed
    sub.guest.put(name, int(value))
    return int(sub.guest.get(f"{name}_agreed"))


def arbiter_check(ctx: Context, *, check_torch_version: bool = True) -> None:
    """Collect every site's signature and settings, compare, tell every site the verdict, raise on mismatch."""
    check_ctx = ctx.sub_ctx("site_check")
    infos = [check_ctx.guest.get("site_info"), *check_ctx.hosts.get("site_info")]
    parties = [ctx.guest.party, *[h.party for h in ctx.hosts]]
    labels = [_party_label(info["site_name"], party[1]) for info, party in zip(infos, parties)]
    verdict = next((f"Differential privacy check failed at {label}: {info['dp_error']}"
                    for label, info in zip(labels, infos) if info.get("dp_error")), None)
    verdict = verdict or signature_mismatch({label: info["signature"] for label, info in zip(labels, infos)},
                                            check_torch_version=check_torch_version)
    if verdict is None:
        verdict = _settings_mismatch(labels, infos)
    check_ctx.guest.put("verdict", verdict)
    check_ctx.hosts.put("verdict", verdict)
    if verdict:
        raise FederationError(verdict)


def _settings_mismatch(labels: list[str], infos: list[dict]) -> str | None:
    """Sites must normalise identically and agree on the training schedule."""
    for key, what in (("patch_spec", "patch/normalisation settings"), ("schedule", "training schedule")):
        ref = infos[0][key]
        for label, info in zip(labels[1:], infos[1:]):
            if info[key] != ref:
                return (f"Site check failed: {what} differ: {labels[0]} {ref} vs {label} {info[key]}; "
                        f"every site must use the same values")
    return None
