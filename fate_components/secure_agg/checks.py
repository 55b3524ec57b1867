"""Before round 1: the strict pre-round check (one verdict for every party) and the sites' agreement on a minimum.

`site_check` (each site) and `arbiter_check` (the arbiter) meet under tag ``site_check``: every
site sends its model signature, patch settings, schedule, DP and device verdicts (``site_info``); the
arbiter compares them and sends every site the same verdict (``verdict``, None when all agree),
naming the parties, and every party raises `FederationError` with it. `agree_min` runs among
the sites only: the arbiter never sees the values.
"""
from __future__ import annotations

from fate_components.core.imaging.patch_presets import describe_patch_spec
from fate_components.core.learning.signature import signature_mismatch

from .channel import Channel, FederationError

__all__ = ["site_check", "arbiter_check", "agree_min"]


def _party_label(name: str, party_id: str) -> str:
    return f"{name} ({party_id})"


def site_check(channel: Channel, site_name: str, payload: dict) -> None:
    """Send this site's model signature and settings to the arbiter; raise if it reports a mismatch."""
    check = channel.sub("site_check")
    check.to_arbiter("site_info", {"site_name": site_name, **payload})
    verdict = check.from_arbiter("verdict")
    if verdict:
        raise FederationError(verdict)


def agree_min(channel: Channel, name: str, value: int) -> int:
    """The sites (never the arbiter) agree on the minimum of their `value`s: hosts tell the guest, it tells them."""
    sub = channel.sub(f"agree_{name}")
    if channel.is_guest:
        agreed = min([int(value), *(int(v) for v in sub.from_hosts(name))])
        sub.to_hosts(f"{name}_agreed", agreed)
        return agreed
    sub.to_guest(name, int(value))
    return int(sub.from_guest(f"{name}_agreed"))


def arbiter_check(channel: Channel, *, check_torch_version: bool = True) -> None:
    """Collect every site's signature and settings, compare, tell every site the verdict, raise on mismatch."""
    check = channel.sub("site_check")
    infos = [check.from_guest("site_info"), *check.from_hosts("site_info")]
    labels = [_party_label(info["site_name"], site.party_id) for info, site in zip(infos, channel.sites)]
    verdict = next((f"Differential privacy check failed at {label}: {info['dp_error']}"
                    for label, info in zip(labels, infos) if info.get("dp_error")), None)
    verdict = verdict or next((f"Device check failed at {label}: {info['device_error']}"
                               for label, info in zip(labels, infos) if info.get("device_error")), None)
    verdict = verdict or signature_mismatch({label: info["signature"] for label, info in zip(labels, infos)},
                                            check_torch_version=check_torch_version)
    if verdict is None:
        verdict = _settings_mismatch(labels, infos)
    check.to_guest("verdict", verdict)
    check.to_hosts("verdict", verdict)
    if verdict:
        raise FederationError(verdict)


def _settings_mismatch(labels: list[str], infos: list[dict]) -> str | None:
    """Sites must normalise identically and agree on the training schedule."""
    for key, what, show in (("patch_spec", "patch/normalisation settings", describe_patch_spec),
                            ("schedule", "training schedule", str)):
        ref = infos[0][key]
        for label, info in zip(labels[1:], infos[1:]):
            if info[key] != ref:
                return (f"Site check failed: {what} differ: {labels[0]} {show(ref)} vs {label} {show(info[key])}; "
                        f"every site must use the same values")
    return None
