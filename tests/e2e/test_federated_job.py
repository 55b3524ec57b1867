"""End to end on a real standalone FATE-Flow: bind three sites, train, predict, check the results.

Nothing here is mocked: the jobs run FATE's own scheduler, standalone federation and
secure aggregation, one process per party.
"""
from __future__ import annotations

import copy
import csv
import json
import os
import pickle
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from fate_components.core.data.candidates import read_candidates
from fate_components.core.evaluation.auc import candidate_auc
from fate_components.core.learning.model_io import load_model
from fate_components.ops import runner
from fate_components.ops.jobs import compile_dag, load_json, parse_sites
from fate_components.ops.site_data import bind_site

pytestmark = pytest.mark.e2e
ROOT = Path(__file__).resolve().parents[2]
ROUNDS = 4


def _follow(flow, conf: dict, dag: dict, timeout_s: float, printer=None) -> runner.JobOutcome:
    sites = parse_sites(conf)
    endpoints = runner.SiteEndpoints.standalone(flow.client(), Path(flow.home), sites)
    return runner.submit_and_follow(endpoints, dag, sites, timeout_s=timeout_s, printer=printer)


def _run(flow, conf: dict, dsl: str = "lung.json", timeout_s: float = 900) -> tuple[str, str]:
    outcome = _follow(flow, conf, compile_dag(load_json(ROOT / "dsl" / dsl), conf), timeout_s)
    return outcome.job_id, outcome.status


def _conf(namespace_prefix: str, rounds: int = ROUNDS) -> dict:
    conf = load_json(ROOT / "conf" / "lung_conf.json")
    for site in conf["sites"].values():
        for table in site.get("tables", {}).values():
            table["namespace"] = f"{namespace_prefix}_{table['namespace']}"
    # Tiny sites have about 21 candidates a scan, so the default 10 negatives per positive would keep every
    # negative. 1 makes every epoch a fresh, balanced subsample of 2 patches a positive (one or two batches a
    # site), and 6 local epochs give the 4 rounds enough steps to learn (pooled tiny sites, 4 rounds, AUC over
    # every candidate: 0.41-0.75 with 3 epochs, 0.68-0.76 with 6, over two seeds).
    conf["parameters"]["common"]["trainer"].update(rounds=rounds, learning_rate=1e-3, negatives_per_positive=1,
                                                   local_epochs=6)
    return conf


@pytest.fixture(scope="module")
def bound(flow, tiny_sites):
    conf = _conf("e2e")
    client = flow.client()
    for site in parse_sites(conf):
        if site.role != "arbiter":
            table = site.tables["site"]
            bind_site(client, tiny_sites[site.name], namespace=table["namespace"], name=table["name"])
    return conf


@pytest.fixture(scope="module")
def trained(flow, bound):
    lines: list[str] = []
    outcome = _follow(flow, bound, compile_dag(load_json(ROOT / "dsl" / "lung.json"), bound), 1200, lines.append)
    return {"job": outcome.job, "status": outcome.status, "progress": lines, "reason": outcome.reason}


def _predictions(flow, job_id: str, site, task: str = "trainer") -> list[dict]:
    directory = runner.data_output_dir(Path(flow.home), job_id, site.role, site.party_id, task, "predictions")
    with open(directory / "predictions.csv", newline="") as f:
        return list(csv.DictReader(f))


def test_training_job_succeeds(trained):
    assert trained["status"] == "success", trained["reason"]


def test_progress_shows_every_round_for_every_site(trained, bound):
    rounds = [entry for entry in trained["progress"] if entry.startswith("[Round ")]
    assert len(rounds) == ROUNDS
    for line in rounds:
        for name in ("hospital_a", "hospital_b", "hospital_c"):
            assert f"{name} loss:" in line


def _rows(client, job_id: str, site, task: str) -> list[dict]:
    response = client.output.query_metric(job_id=job_id, role=site.role, party_id=site.party_id, task_name=task)
    assert response.get("code") == 0, response
    return response["data"]


def test_metrics_exist_for_every_party(flow, trained, bound):
    client = flow.client()
    job_id = trained["job"]["job_id"]
    for site in parse_sites(bound):
        metrics = runner.step_metrics(client, job_id, site.role, site.party_id, "trainer")
        if site.role == "arbiter":
            assert sorted(metrics["round_seconds"]) == list(range(ROUNDS))
        else:
            for name in ("train_loss", "val_loss", "val_auc", "global_val_loss"):
                assert sorted(metrics[name]) == list(range(ROUNDS)), (site.name, name)
            assert all(np.isfinite(v) for v in metrics["train_loss"].values())
    for site in parse_sites(bound):
        if site.role == "arbiter":
            continue
        summary = runner.summaries(client, job_id, site.role, site.party_id, "reader_all")
        assert summary["reader_summary"]["scans_read"] > 0 and summary["reader_summary"]["mode"] == "predict"


def test_each_task_logs_one_loss_series_for_fate_board(flow, trained, bound):
    # FATE-Board joins every metric whose type contains "loss" into one chart (see components/_metrics.py).
    client = flow.client()
    job_id = trained["job"]["job_id"]
    dump = os.environ.get("FATE_LUNG_BOARD_DUMP")   # a folder: query-metric of every task, for tools/fate_board_check
    if dump:
        Path(dump).mkdir(parents=True, exist_ok=True)
        for site in parse_sites(bound):
            for task in (("trainer",) if site.role == "arbiter" else ("reader_all", "trainer", "evaluation")):
                (Path(dump) / f"{task}.{site.role}.{site.party_id}.json").write_text(
                    json.dumps(client.output.query_metric(job_id=job_id, role=site.role, party_id=site.party_id,
                                                          task_name=task), indent=4))
    for site in parse_sites(bound):
        rows = _rows(client, job_id, site, "trainer")
        # Under FATE-Flow each round's point is a row of its own (FATE's restful metric handler posts every call).
        loss_typed = sorted({m["name"] for m in rows if "loss" in (m.get("type") or "").lower()})
        # The arbiter's one loss series would be the global validation loss, which Paillier (the default) hides from it.
        assert loss_typed == ([] if site.role == "arbiter" else ["train_loss"]), (site.name, loss_typed)
        summary = runner.summaries(client, job_id, site.role, site.party_id, "trainer")["train_summary"]
        assert summary["rounds_trained" if site.role != "arbiter" else "rounds_run"] == ROUNDS, site.name
        assert all(not isinstance(v, (dict, list)) for v in summary.values()), site.name


def _hospitals(bound) -> list:
    """The sites that hold data (every party but the arbiter)."""
    return [site for site in parse_sites(bound) if site.role != "arbiter"]


def test_each_site_reports_froc_metrics(flow, trained, bound):
    client = flow.client()
    job_id = trained["job"]["job_id"]
    for site in _hospitals(bound):
        froc = runner.summaries(client, job_id, site.role, site.party_id, "evaluation").get("froc_summary")
        assert froc, site.name
        assert 0.0 <= froc["cpm"] <= 1.0 and froc["split"] == "val" and froc["n_scans"] >= 1
        assert {k for k in froc if k.startswith("sensitivity_at_")} == {
            f"sensitivity_at_{r}" for r in ("0.125", "0.25", "0.5", "1.0", "2.0", "4.0", "8.0")}
        assert all(not isinstance(v, (dict, list)) for v in froc.values()), site.name
        assert any(m["name"] == "froc_curve" for m in _rows(client, job_id, site, "evaluation"))


def test_each_site_logs_fates_evaluation_structure(flow, trained, bound):
    # Prepare: the held-out candidates' labels and scores, as the site's predictions hold them.
    client = flow.client()
    job_id = trained["job"]["job_id"]
    for site in _hospitals(bound):
        held = [r for r in _predictions(flow, job_id, site) if r["patient_split"] == "val"]
        # Execute
        data = runner.evaluation_metric(client, job_id, site.role, site.party_id, "evaluation")
        # Assert: {upstream task: {dataset: [{metric, val}, [ks, ks_table], ...]}}, as FATE's evaluation logs it
        assert data is not None and list(data) == ["trainer"] and list(data["trainer"]) == ["val"], site.name
        entries = {}
        for entry in data["trainer"]["val"]:
            for e in (entry if isinstance(entry, list) else [entry]):
                entries[e["metric"]] = e["val"]
        labels = np.array([int(r["class"]) for r in held])
        auc = candidate_auc(labels, np.array([float(r["probability"]) for r in held]))
        assert "binary_accuracy" in entries, site.name
        if np.isfinite(auc):   # both classes among the held-out candidates
            assert entries["auc"] == pytest.approx(auc, abs=1e-9), site.name
            assert {"ks", "ks_table", "binary_recall"} <= set(entries), site.name
        else:
            assert "auc" not in entries and "ks" not in entries, site.name


def test_each_site_trains_on_its_own_data(flow, trained, bound, tiny_sites):
    # FATE-Flow once handed every party the guest's directory; prove each site scored its own candidates.
    for site in parse_sites(bound):
        if site.role == "arbiter":
            continue
        predicted = _predictions(flow, trained["job"]["job_id"], site)
        expected = read_candidates(tiny_sites[site.name] / "candidates.csv")
        assert len(predicted) == len(expected), site.name
        assert {r["seriesuid"] for r in predicted} == {c.seriesuid for c in expected}
        assert all(0.0 <= float(r["probability"]) <= 1.0 for r in predicted)


def test_paillier_is_the_default_and_the_arbiter_sees_only_ciphertexts(flow, trained, bound):
    # The arbiter's own record of every message it received, and of the objects its process holds.
    assert bound["parameters"]["common"]["trainer"]["aggregation"] == "paillier"
    summary_path = next((Path(flow.home) / "jobs" / trained["job"]["job_id"] / "arbiter").glob(
        "*/trainer/*/output/output_model/model_directory/arbiter_summary.json"))
    audit = json.loads(summary_path.read_text())["audit"]
    assert audit["secret_key_objects"] == 0
    assert audit["public_key_bits"] == 2048
    received = audit["received"]
    assert len(received) == 3 * (2 * ROUNDS + 2)  # per round model + val loss; weights once per exchange
    assert all(r["type"] == "bytes" and r["bytes"] % 512 == 0 for r in received)
    assert len({r["sha256"] for r in received}) == len(received)  # randomised: no two messages alike


def test_sites_log_paillier_costs(flow, trained, bound):
    client = flow.client()
    metrics = runner.step_metrics(client, trained["job"]["job_id"], "guest", "9999", "trainer")
    assert sorted(metrics["bytes_sent"]) == list(range(ROUNDS))
    assert all(b > 0 for b in metrics["bytes_sent"].values())
    assert all(v == 0 for v in metrics["clipped_values"].values())


def test_model_artifact_downloads_and_loads(flow, trained, bound, tmp_path):
    client = flow.client()
    guest = next(s for s in parse_sites(bound) if s.role == "guest")
    response = client.output.download_model(job_id=trained["job"]["job_id"], role="guest", party_id=guest.party_id,
                                            task_name="trainer", path=str(tmp_path))
    assert response["code"] == 0, response
    model, meta = load_model(Path(response["directory"]))
    assert meta["train_config"]["rounds"] == ROUNDS
    assert len(meta["history"]) == ROUNDS
    assert model(__import__("torch").zeros(2, 1, 32, 32, 32)).shape == (2,)


def test_all_sites_end_with_the_same_model(flow, trained, bound, tmp_path):
    client = flow.client()
    import torch

    states = []
    for site in parse_sites(bound):
        if site.role == "arbiter":
            continue
        response = client.output.download_model(job_id=trained["job"]["job_id"], role=site.role,
                                                party_id=site.party_id, task_name="trainer",
                                                path=str(tmp_path / site.name))
        states.append(load_model(Path(response["directory"]))[0].state_dict())
    for name in states[0]:
        for other in states[1:]:
            torch.testing.assert_close(states[0][name], other[name], rtol=0, atol=1e-5)
    # The same check through the command a user runs on FATE's downloaded artifacts.
    from fate_components.cli import main as cli

    assert cli(["verify-model", str(tmp_path / "hospital_a"), str(tmp_path / "hospital_c"), "--atol", "1e-5"]) == 0


def test_federated_model_beats_chance(flow, trained, bound):
    # Held-out patients only: the training patients' candidates are what the model was fitted to.
    ys, ps = [], []
    for site in _hospitals(bound):
        held = [r for r in _predictions(flow, trained["job"]["job_id"], site) if r["patient_split"] == "val"]
        ys += [int(r["class"]) for r in held]
        ps += [float(r["probability"]) for r in held]
    assert ys and 0 < sum(ys) < len(ys), f"held-out candidates need both classes: {sum(ys)} of {len(ys)} positive"
    auc = candidate_auc(np.array(ys), np.array(ps))
    assert auc > 0.65, f"AUC over the held-out (val) patients' {len(ys)} candidates {auc:.3f}"


# Records, once the page has loaded, how many of its images decoded (a copy of the page gets it;
# the report has no script).
_IMAGE_PROBE = """<script>window.addEventListener("load", () => {
  const images = [...document.images];
  const decoded = images.filter(i => i.complete && i.naturalWidth > 0).length;
  document.body.setAttribute("data-images", decoded + "/" + images.length);
});</script>"""


def _images_decoded_in_chromium(page: Path, profile: Path) -> str:
    chromium = shutil.which("chromium")
    assert chromium, "headless Chromium is needed: bash scripts/install_browser.sh (Debian's chromium)"
    result = subprocess.run([chromium, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
                             "--disable-background-networking", "--disable-component-update", "--disable-sync",
                             f"--user-data-dir={profile}", "--virtual-time-budget=10000", "--dump-dom",
                             page.as_uri()], capture_output=True, text=True, timeout=180)
    found = re.search(r'data-images="(\d+/\d+)"', result.stdout)
    assert found, f"no probe result in Chromium's DOM; stderr: {result.stderr[-2000:]}"
    return found.group(1)


def test_report_page_renders_with_its_plots_in_headless_chromium(flow, trained, bound, tmp_path):
    from fate_components.cli import main as cli

    conf_path = tmp_path / "conf.json"
    conf_path.write_text(json.dumps(bound))
    out = tmp_path / "report"
    assert cli(["report", trained["job"]["job_id"], "--home", flow.home, "--conf", str(conf_path),
                "--out", str(out)]) == 0
    data = json.loads((out / "report.json").read_text())
    assert sorted(data["sites"]) == ["hospital_a", "hospital_b", "hospital_c"]
    for name, site in data["sites"].items():
        assert [r for r, _ in site["train_loss"]] == list(range(1, ROUNDS + 1)), name
        assert site["data"]["scans"] > 0 and 0 < site["data"]["positives"] < site["data"]["candidates"]
        band = site["evaluation"]["froc_band"]
        assert len(band["low"]) == len(band["high"]) == len(band["fps_per_scan"])
    page = (out / "index.html").read_text()
    assert page.count("<tr><td>hospital_") == 3 and "<script" not in page

    probed = out / "probe.html"
    probed.write_text(page.replace("</body>", _IMAGE_PROBE + "</body>"))
    assert _images_decoded_in_chromium(probed, tmp_path / "chrome") == "3/3"
    # The probe can fail: the same page with one image missing decodes two of three.
    broken = out / "broken.html"
    broken.write_text(probed.read_text().replace('src="froc.png"', 'src="missing.png"'))
    assert _images_decoded_in_chromium(broken, tmp_path / "chrome2") == "2/3"


def test_predict_job_loads_the_trained_model(flow, trained, bound):
    client = flow.client()
    job = trained["job"]
    dag = compile_dag(load_json(ROOT / "dsl" / "lung_predict.json"), bound,
                      model_job={"model_id": job["model_id"], "model_version": job["model_version"]})
    predict = runner.submit(client, dag)
    status = runner.wait(client, predict["job_id"], timeout_s=600, printer=lambda _: None)
    assert status == "success", runner.failure_reason(client, predict["job_id"], Path(flow.home))
    for site in parse_sites(bound):
        if site.role == "arbiter":
            continue
        again = _predictions(flow, predict["job_id"], site)
        first = _predictions(flow, job["job_id"], site)
        assert [r["seriesuid"] for r in again] == [r["seriesuid"] for r in first]
        np.testing.assert_allclose([float(r["probability"]) for r in again],
                                   [float(r["probability"]) for r in first], atol=1e-6)
        summary = runner.summaries(client, predict["job_id"], site.role, site.party_id, "trainer")
        assert summary["predict_summary"]["candidates_scored"] == len(again), site.name


@pytest.fixture(scope="module")
def one_round(flow, bound, wire_tap, tmp_path_factory) -> dict[str, dict]:
    """One round from the same seed with Paillier, with Paillier whose masks the wiretap's test-only switch turns
    off (``paillier_unmasked``), and with plaintext aggregation: job ids and final models."""
    client = flow.client()
    jobs = {}
    for run in ("paillier", "paillier_unmasked", "plaintext"):
        aggregation = "plaintext" if run == "plaintext" else "paillier"
        conf = copy.deepcopy(bound)
        conf["parameters"]["common"]["trainer"].update(rounds=1, aggregation=aggregation,
                                                       allow_plaintext=aggregation == "plaintext")
        switch = wire_tap / "masking_off"    # the wiretap's test-only switch (hooks/fate_lung_wiretap.py)
        if run == "paillier_unmasked":
            switch.touch()
        try:
            job_id, status = _run(flow, conf)
        finally:
            switch.unlink(missing_ok=True)
        assert status == "success", runner.failure_reason(client, job_id, Path(flow.home))
        response = client.output.download_model(job_id=job_id, role="guest", party_id="9999", task_name="trainer",
                                                path=str(tmp_path_factory.mktemp(run)))
        jobs[run] = {"job_id": job_id, "model": load_model(Path(response["directory"]))[0].state_dict()}
    return jobs


def test_paillier_and_plaintext_give_the_same_model(one_round):
    import torch

    from fate_components.secure_agg.packing import PackingSpec

    # After one round the model is the aggregate: equal within the fixed-point error plus one float32 step.
    tolerance = PackingSpec().max_abs_error + 1e-6
    for name, value in one_round["paillier"]["model"].items():
        torch.testing.assert_close(value, one_round["plaintext"]["model"][name], rtol=0, atol=tolerance)


def _tapped(wire_tap: Path, kind: str, pids: set[int] | None = None, session: str | None = None) -> list[dict]:
    records = []
    for path in sorted((wire_tap / kind).glob("*.pkl")):
        record = pickle.loads(path.read_bytes())
        if (pids is None or record["pid"] in pids) and (session is None or session in record.get("session", "")):
            records.append(record)
    return records


def _int_encodings(x: int) -> list[bytes]:
    size = (x.bit_length() + 7) // 8
    return [x.to_bytes(size, "little"), x.to_bytes(size, "big"), str(x).encode(), format(x, "x").encode(),
            format(x, "X").encode()]


def _update_probes(update: dict) -> list[bytes]:
    """Byte strings that would appear if this plaintext update crossed the wire: 8 consecutive values
    of every tensor, as float32, float64 and weighted float64, from a few places in each tensor."""
    probes = []
    for array in update["arrays"]:
        flat = np.asarray(array).ravel()
        if flat.size < 8:
            continue
        for start in sorted({0, flat.size // 2 - 4, flat.size - 8}):
            window = flat[start:start + 8]
            if np.count_nonzero(window) < 4:  # runs of zeros would match any padding
                continue
            probes += [window.astype(np.float32).tobytes(), window.astype(np.float64).tobytes(),
                       (window.astype(np.float64) * update["weight"]).tobytes()]
    return probes


def _wire_of(wire_tap: Path, job_id: str) -> tuple[list[dict], bytes, bytes, set[int]]:
    wire = _tapped(wire_tap, "wire", session=job_id)
    to_arbiter = b"".join(r["data"] for r in wire if any(role == "arbiter" for role, _ in r["dst"]))
    everything = b"".join(r["data"] for r in wire)
    site_pids = {r["pid"] for r in wire if r["src"][0] in ("guest", "host") and "trainer" in r["session"]}
    return wire, to_arbiter, everything, site_pids


def test_wire_capture_shows_no_secret_key_and_no_plaintext_update_crossing(wire_tap, trained, one_round):
    """Every byte any party pushed into FATE's federation during the Paillier job, searched for the
    secret key and for each site's plaintext update; the same search finds the update in plaintext mode."""
    wire, to_arbiter, everything, site_pids = _wire_of(wire_tap, trained["job"]["job_id"])
    assert len(site_pids) == 3 and to_arbiter
    (secret,) = _tapped(wire_tap, "secrets", pids=site_pids)
    n, p, q = secret["n"], secret["p"], secret["q"]
    # Positive control: the public key reaches the arbiter (FATE's key state writes it as digits).
    assert any(encoding in to_arbiter for encoding in _int_encodings(n))
    for factor in (p, q):
        assert not [encoding for encoding in _int_encodings(factor) if encoding in everything]
    assert secret["sk_bytes"] not in everything
    updates = _tapped(wire_tap, "updates", pids=site_pids)
    assert len(updates) == 3 * 2 * ROUNDS  # each site: the model and the validation loss, every round
    probes = [probe for update in updates for probe in _update_probes(update)]
    assert len(probes) > 100
    assert not [probe for probe in probes if probe in everything]

    # The same detector on the plaintext job finds every site's update on its way to the arbiter.
    _, plain_to_arbiter, _, plain_pids = _wire_of(wire_tap, one_round["plaintext"]["job_id"])
    plain_updates = [u for u in _tapped(wire_tap, "updates", pids=plain_pids) if u["tag"] == "model"]
    assert len(plain_updates) == 3
    for update in plain_updates:
        assert any(probe in plain_to_arbiter for probe in _update_probes(update))


def test_masked_and_unmasked_paillier_rounds_give_the_same_model_bit_for_bit(one_round):
    masked, unmasked = one_round["paillier"]["model"], one_round["paillier_unmasked"]["model"]
    assert list(masked) == list(unmasked)
    differing = [name for name in masked if not (masked[name] == unmasked[name]).all()]
    assert not differing, differing


_SPLIT = "__table_persistent_split__"   # FATE's name for a large message's slices (fate/arch/federation/api/_serdes.py)


def _ciphertexts_to_arbiter(wire: list[dict]) -> list[dict]:
    """Every Paillier ciphertext message a site pushed to the arbiter, parsed from the recorded wire bytes:
    FATE sends a small message as one byte 0 then its pickle, a large one as slices of its pickle (recorded
    reassembled, under the name + _SPLIT) announced by a header starting with byte 1."""
    found = []
    for record in wire:
        if not any(role == "arbiter" for role, _ in record["dst"]):
            continue
        name, data = record["name"], record["data"]
        if name.endswith(_SPLIT):
            name, payload = name[:-len(_SPLIT)], data
        elif data[:1] == b"\x00":
            payload = data[1:]
        else:
            continue            # a split header: its slices are the record above or below
        if name not in ("values_cipher", "weight_cipher"):
            continue
        count, blob = pickle.loads(payload)
        found.append({"src": record["src"], "name": name, "tag": record["tag"].rsplit(".", 1)[-1], "count": count,
                      "blob": blob})
    return found


def _colluding_decryption(wire_tap: Path, job_id: str) -> dict:
    """What the guest (it holds the secret key) decrypts from every ciphertext the arbiter received in one job."""
    from types import SimpleNamespace

    from fate_components.secure_agg import cipher

    wire, _, _, site_pids = _wire_of(wire_tap, job_id)
    (secret,) = _tapped(wire_tap, "secrets", pids=site_pids)
    public = SimpleNamespace(n=secret["n"], n_square=secret["n"] ** 2, ciphertext_bytes=512)
    decryptor = cipher.Decryptor(public, SimpleNamespace(p=secret["p"], q=secret["q"]))
    messages = _ciphertexts_to_arbiter(wire)
    for m in messages:
        m["cts"] = cipher.from_wire(public, m["blob"], m["count"], f"{m['src']}")
        m["plain"] = decryptor.decrypt(m["cts"])
    updates = {}
    for u in _tapped(wire_tap, "updates", pids=site_pids):
        updates.setdefault(u["tag"], {})[u["pid"]] = u
    return {"messages": messages, "updates": updates, "public": public, "decryptor": decryptor, "wire": wire}


def _site_of(wire: list[dict], pid: int) -> tuple[str, str]:
    return next(r["src"] for r in wire if r["pid"] == pid)


def _windows_recovered(codes: np.ndarray, values: np.ndarray, fraction: float, spec) -> tuple[int, int]:
    """(aligned 8-value windows of `values` that the slot codes give back within one site's fixed-point error, of)"""
    decoded = codes[:values.size] / 2.0 ** spec.precision_bits / fraction - spec.clip
    expected = np.clip(values.astype(np.float64), -spec.clip, spec.clip)
    close = np.abs(decoded - expected) <= 2.0 ** -spec.precision_bits / fraction
    starts = range(0, values.size - 7, 8)
    return int(sum(close[i:i + 8].all() for i in starts)), len(starts)


def _found_anywhere(codes: np.ndarray, window: np.ndarray, fraction: float, spec) -> bool:
    """Whether an 8-value window appears at any offset of the decoded slots, within one site's fixed-point error."""
    decoded = codes / 2.0 ** spec.precision_bits / fraction - spec.clip
    tol = 2.0 ** -spec.precision_bits / fraction
    hits = np.flatnonzero(np.abs(decoded[:decoded.size - 7] - window[0]) <= tol)
    return any(np.all(np.abs(decoded[i:i + 8] - window) <= tol) for i in hits)


@pytest.mark.parametrize("run", ["paillier", "paillier_unmasked"])
def test_a_colluding_hospital_with_the_secret_key_reads_no_host_update_off_the_arbiter(wire_tap, one_round, run):
    """The guest (it holds the secret key) decrypts every ciphertext the arbiter received from each host, parsed from
    the wire bytes: masked, none gives back a window of the host's update; the control (masks switched off by the
    wiretap's test-only switch) gives back all of it. Either way the sum of all sites decrypts to the mean."""
    from fate_components.secure_agg.packing import PackingSpec, decode_sum, unpack

    masked = run == "paillier"
    seen = _colluding_decryption(wire_tap, one_round[run]["job_id"])
    spec = PackingSpec.for_key(2048, precision_bits=20, clip=8.0, max_sites=3)   # what the sites pack with
    messages, updates, wire = seen["messages"], seen["updates"], seen["wire"]
    assert sorted((m["src"][0], m["name"], m["tag"]) for m in messages) == sorted(
        (role, name, tag) for role in ("guest", "host", "host") for name in ("values_cipher", "weight_cipher")
        for tag in ("model", "val_loss"))
    assert {tag: len(by_pid) for tag, by_pid in updates.items()} == {"model": 3, "val_loss": 3}
    for tag, by_pid in updates.items():
        total = sum(u["weight"] for u in by_pid.values())
        sites = {_site_of(wire, pid): u for pid, u in by_pid.items()}
        for m in (m for m in messages if m["tag"] == tag and m["src"][0] == "host"):
            update = sites[m["src"]]
            fraction = update["weight"] / total
            if m["name"] == "weight_cipher":
                assert (m["plain"] == [round(update["weight"] * 1000)]) is not masked, (tag, m["src"])
                continue
            values = np.concatenate([np.asarray(a, dtype=np.float64).ravel() for a in update["arrays"]])
            codes = unpack(m["plain"], m["count"] * spec.slots_per_plaintext, spec)
            recovered, windows = _windows_recovered(codes, values, fraction, spec)
            assert windows > 0 or values.size < 8
            assert recovered == (0 if masked else windows), (tag, m["src"], recovered, windows)
            first = codes[0] / 2.0 ** spec.precision_bits / fraction - spec.clip   # one value (the loss: only one)
            assert (abs(first - np.clip(values[0], -spec.clip, spec.clip)) <= 2.0 ** -spec.precision_bits / fraction
                    ) is not masked, (tag, m["src"], first, values[0])
            if masked:
                # ... nor at any offset, from a few places in each tensor, nor as bytes in any encoding the wire
                # test searches for (the plaintext integers as bytes, the decoded values as float32 and float64)
                starts = sorted({0, values.size // 2 - 4, values.size - 8}) if values.size >= 8 else []
                for start in starts:
                    assert not _found_anywhere(codes, values[start:start + 8], fraction, spec), (tag, start)
                decoded = codes / 2.0 ** spec.precision_bits / fraction - spec.clip
                haystack = b"".join(x.to_bytes(256, "big") + x.to_bytes(256, "little") for x in m["plain"])
                haystack += decoded.astype(np.float32).tobytes() + decoded.tobytes() + (decoded * update[
                    "weight"]).tobytes()
                assert not [p for p in _update_probes(update) if p in haystack], (tag, m["src"])
        # The arbiter's product of all three sites' values ciphertexts decrypts to the plaintext weighted mean
        cts = [m["cts"] for m in messages if m["tag"] == tag and m["name"] == "values_cipher"]
        n2 = seen["public"].n_square
        product = [a * b % n2 * c % n2 for a, b, c in zip(*cts)]
        n_values = sum(np.asarray(a).size for a in next(iter(by_pid.values()))["arrays"])
        mean = decode_sum(unpack(seen["decryptor"].decrypt(product), n_values, spec), spec)
        expected = sum(u["weight"] * np.clip(np.concatenate([np.asarray(a, dtype=np.float64).ravel()
                                                             for a in u["arrays"]]), -spec.clip, spec.clip)
                       for u in by_pid.values()) / total
        assert np.max(np.abs(mean - expected)) <= PackingSpec().max_abs_error, tag


def test_plaintext_aggregation_is_refused_unless_allowed(flow, bound):
    conf = copy.deepcopy(bound)
    conf["parameters"]["common"]["trainer"].update(rounds=1, aggregation="plaintext")
    job_id, status = _run(flow, conf)
    assert status == "failed"
    log = Path(flow.home) / "logs" / job_id / "arbiter" / "9999" / "trainer" / "component" / "ERROR"
    assert "Set allow_plaintext=true" in log.read_text()


def test_early_stopping_ends_every_party_at_the_same_round(flow, bound):
    client = flow.client()
    conf = copy.deepcopy(bound)
    # A learning rate far too high makes the global validation loss stop improving quickly.
    conf["parameters"]["common"]["trainer"].update(rounds=6, patience=1, learning_rate=0.05)
    job_id, status = _run(flow, conf)
    assert status == "success", runner.failure_reason(client, job_id, Path(flow.home))
    rounds_run = {}
    for site in parse_sites(conf):
        metrics = runner.step_metrics(client, job_id, site.role, site.party_id, "trainer")
        key = "round_seconds" if site.role == "arbiter" else "train_loss"
        rounds_run[site.name] = len(metrics[key])
    assert len(set(rounds_run.values())) == 1, rounds_run
    assert rounds_run["hospital_a"] < 6


def test_unbound_table_is_refused_before_submitting(flow, bound):
    client = flow.client()
    conf = copy.deepcopy(bound)
    conf["sites"]["hospital_c"]["tables"]["site"]["name"] = "never_bound"
    before = len(client.job.query().get("data") or [])
    with pytest.raises(runner.JobError, match=r"hospital_c \(host 10001\): table e2e_hospital_c/never_bound"):
        runner.check_tables(client, conf)
    assert len(client.job.query().get("data") or []) == before


def test_mismatched_architecture_fails_on_every_party_naming_the_layer(flow, bound):
    client = flow.client()
    conf = copy.deepcopy(bound)
    conf["parameters"]["common"]["trainer"]["rounds"] = 1
    conf["parameters"]["sites"] = {"hospital_b": {"trainer": {"model": {"widths": [16, 24, 64], "blocks": [1, 1, 1],
                                                                        "groups": 8, "stem_stride": 2}}}}
    dag = compile_dag(load_json(ROOT / "dsl" / "lung.json"), conf)
    job = runner.submit(client, dag)
    status = runner.wait(client, job["job_id"], timeout_s=600, printer=lambda _: None)
    assert status == "failed"
    home = Path(flow.home)
    expected = ("parameter size mismatch at 'layers.1.0.conv1.weight': hospital_a (9999) (32, 16, 3, 3, 3) "
                "vs hospital_b (10000) (24, 16, 3, 3, 3)")
    for site in parse_sites(conf):
        log = home / "logs" / job["job_id"] / site.role / site.party_id / "trainer" / "component" / "ERROR"
        assert expected in log.read_text(), f"{site.name}: {log}"


def _train_patients(tiny_sites, conf: dict) -> dict[str, int]:
    """Training patients per site, split exactly as the reader splits them (per seriesuid)."""
    from fate_components.core.data.patch_dataset import patient_split

    reader = conf["parameters"]["common"]["reader_all"]
    counts = {}
    for name, site_dir in tiny_sites.items():
        uids = {c.seriesuid for c in read_candidates(site_dir / "candidates.csv")}
        splits = patient_split(uids, reader["val_fraction"], reader["seed"])
        counts[name] = sum(1 for s in splits.values() if s == "train")
    return counts


def test_privacy_budget_stops_every_party_at_the_same_round(flow, bound, tiny_sites):
    from fate_components.core.privacy.dp import DPConfig, epsilon_for, patient_sampling, planned_rounds

    # Prepare: patient-level DP-SGD with 2 expected patients per step, so sites of different size spend their
    # budget at different rates; the budget is what the fastest-spending site has after 2 of 4 rounds.
    client = flow.client()
    conf = copy.deepcopy(bound)
    trainer = conf["parameters"]["common"]["trainer"]
    trainer.update(rounds=4, local_epochs=1, batch_size=2)
    patients = _train_patients(tiny_sites, conf)
    dp = {"mode": "sample", "noise_multiplier": 1.0, "max_grad_norm": 1.0, "delta": 0.1, "accountant": "rdp"}
    spend = {name: patient_sampling(n, 2) for name, n in patients.items()}
    budget = max(epsilon_for(DPConfig(**dp), rate, 2 * steps) for rate, steps in spend.values()) * 1.0001
    trainer["dp"] = {**dp, "max_epsilon": budget}
    expected = min(planned_rounds(DPConfig(**trainer["dp"]), rounds=4, local_epochs=1, batch_size=2, n_patients=n,
                                  n_sites=3) for n in patients.values())
    assert expected == 2
    # Execute
    lines: list[str] = []
    outcome = _follow(flow, conf, compile_dag(load_json(ROOT / "dsl" / "lung.json"), conf), 900, lines.append)
    job, status = outcome.job, outcome.status
    # Assert: every party (the arbiter too) ran exactly the rounds the budget allows; each site's epsilon metric is
    # the accountant's value for its own sampling rate, within the budget; the progress display shows epsilon
    assert status == "success", runner.failure_reason(client, job["job_id"], Path(flow.home))
    for site in parse_sites(conf):
        metrics = runner.step_metrics(client, job["job_id"], site.role, site.party_id, "trainer")
        key = "round_seconds" if site.role == "arbiter" else "epsilon"
        assert sorted(metrics[key]) == list(range(expected)), site.name
        if site.role != "arbiter":
            rate, steps = spend[site.name]
            for r, value in metrics["epsilon"].items():
                assert value == pytest.approx(epsilon_for(DPConfig(**dp), rate, steps * (r + 1)), rel=1e-9)
            assert metrics["epsilon"][expected - 1] <= budget
    assert sum("epsilon: " in line for line in lines) == expected, lines


def test_dp_delta_too_large_for_one_site_fails_every_party_naming_it(flow, bound, tiny_sites):
    # Prepare: a delta between 1/(largest site's patients) and 1/(next largest): only the largest site refuses it
    client = flow.client()
    conf = copy.deepcopy(bound)
    patients = _train_patients(tiny_sites, conf)
    ordered = sorted(patients.values(), reverse=True)
    assert ordered[0] > ordered[1], patients
    delta = (1 / ordered[0] + 1 / ordered[1]) / 2
    largest = max(patients, key=patients.get)
    conf["parameters"]["common"]["trainer"].update(rounds=1, dp={"mode": "sample", "delta": delta})
    # Execute
    job_id, status = _run(flow, conf, timeout_s=600)
    # Assert: failed before any round, on every party, naming the site and the patient count
    assert status == "failed"
    party = conf["sites"][largest]["party_id"]
    expected = (f"Differential privacy check failed at {largest} ({party}): dp.delta={delta} must be smaller than "
                f"1/(number of training patients) = 1/{ordered[0]}")
    for site in parse_sites(conf):
        log = Path(flow.home) / "logs" / job_id / site.role / site.party_id / "trainer" / "component" / "ERROR"
        assert expected in log.read_text(), f"{site.name}: {log}"
        assert "train_loss" not in runner.step_metrics(client, job_id, site.role, site.party_id, "trainer")
