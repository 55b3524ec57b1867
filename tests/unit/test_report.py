"""The HTML report from plain data: files, table rows, no half-written folder on failure."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from fate_components.ops.jobs import Site
from fate_components.ops.report import PLOTS, collect, write_report
from fate_components.ops.runner import SiteEndpoints


def _data(evaluated: bool = True) -> dict:
    band = {"fps_per_scan": [0.125, 1.0, 8.0], "sensitivity": [0.2, 0.6, 0.9], "low": [0.1, 0.4, 0.8],
            "high": [0.3, 0.7, None]}
    site = {"role": "guest", "party_id": "9999", "train_loss": [[1, 0.6], [2, 0.4]], "val_auc": [[1, 0.7], [2, -1.0]],
            "global_val_loss": [[1, 0.5], [2, 0.45]],
            "data": {"scans": 4, "candidates": 90, "positives": 9, "median_spacing_mm": [0.7, 0.7, 1.25],
                     "slice_spacing_range_mm": [1.0, 2.5], "skipped_scans": 0, "skipped_candidates": 0},
            "bytes_sent": [[1, 1.5e6], [2, 2.5e6]],
            "evaluation": {"cpm": 0.61, "cpm_ci95": [0.4, None], "auc": 0.9, "candidates": {"n": 90, "auc": 0.875},
                           "froc_band": band,
                           "froc": {"fps_per_scan": [0, 1], "sensitivity": [0, 0.6]}} if evaluated else None}
    return {"job_id": "202611260000000000000",
            "sites": {"hospital_a": site, "hospital_<b>": {**site, "epsilon": [[1, 1.5], [2, 2.345]]}}}


def test_report_writes_page_plots_and_data(tmp_path):
    page = write_report(_data(), tmp_path / "report")
    for name in (*PLOTS, "report.json", "index.html"):
        assert (tmp_path / "report" / name).stat().st_size > 0
    png = (tmp_path / "report" / "loss.png").read_bytes()
    assert png.startswith(b"\x89PNG")
    text = page.read_text()
    assert text.count("<tr><td>hospital_") == 2 and "hospital_&lt;b&gt;" in text   # names are escaped
    assert "0.610 (0.400-n/a)" in text and "0.70 x 0.70 x 1.25" in text
    assert "<td>no DP</td>" in text and "<td>2.35</td>" in text   # a site's last epsilon, when DP was on
    assert "<td>0.875</td>" in text and "<td>0.900</td>" not in text   # the candidate AUC, not the detection AUC
    assert "<td>2.00</td>" in text   # mean MB of encrypted updates per round
    assert json.loads((tmp_path / "report" / "report.json").read_text())["job_id"] == "202611260000000000000"


def test_report_without_evaluation_says_so(tmp_path):
    page = write_report(_data(evaluated=False), tmp_path / "report")
    assert page.read_text().count("not evaluated") == 2


def test_failed_report_leaves_the_previous_one_and_no_partial_folder(tmp_path):
    write_report(_data(), tmp_path / "report")
    broken = _data()
    broken["sites"]["hospital_a"]["train_loss"] = "not a series"
    with pytest.raises(Exception):
        write_report(broken, tmp_path / "report")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report"]
    assert (tmp_path / "report" / "index.html").exists()


class _SiteFlow:
    """One site's FATE-Flow, as far as the report asks it: the trainer's per-round metrics."""

    def __init__(self, loss: float) -> None:
        self.loss, self.output = loss, self

    def query_metric(self, job_id, role, party_id, task_name):
        return {"code": 0, "data": [{"name": "train_loss", "step_axis": "round",
                                     "data": [{"step": 0, "metric": self.loss}]}]}


def _outputs(home: Path, job_id: str, site: Site, scans: int) -> None:
    """What a site's FATE-Flow keeps of the job in its home: the reader's summary and the evaluation report."""
    task = home / "jobs" / job_id / site.role / site.party_id
    reader = task / "reader_all" / "0" / "output" / "output_data" / "data_directory"
    reader.mkdir(parents=True)
    (reader / "summary.json").write_text(json.dumps({"scans": [{"spacing_mm": [0.7, 0.7, 1.0]}] * scans}))
    (reader / "candidates.csv").write_text("seriesuid,label\n" + "s,0\n" * 3 + "s,1\n")
    evaluation = task / "evaluation" / "0" / "output" / "report" / "data_directory"
    evaluation.mkdir(parents=True)
    (evaluation / "evaluation.json").write_text(json.dumps({"cpm": 0.1 * scans, "cpm_ci95": [None, None]}))


def test_collect_reads_each_site_from_its_own_fate_flow_and_home(tmp_path):
    # Prepare: two hospitals and the coordinator, each hospital on its own FATE-Flow with its own home
    sites = [Site("hospital_a", "guest", "9999", {}), Site("hospital_b", "host", "10000", {}),
             Site("coordinator", "arbiter", "9999", {})]
    _outputs(tmp_path / "a", "j1", sites[0], scans=2)
    _outputs(tmp_path / "b", "j1", sites[1], scans=3)
    flows = {"hospital_a": _SiteFlow(0.25), "hospital_b": _SiteFlow(0.5), "coordinator": _SiteFlow(9.0)}
    endpoints = SiteEndpoints(clients=flows, homes={"hospital_a": tmp_path / "a", "hospital_b": tmp_path / "b",
                                                    "coordinator": tmp_path / "a"}, initiator="hospital_a")
    # Execute
    data = collect(endpoints, "j1", sites)
    # Assert: the arbiter has no row; each hospital's loss, data summary and CPM are its own
    assert list(data["sites"]) == ["hospital_a", "hospital_b"]
    assert [data["sites"][n]["train_loss"] for n in data["sites"]] == [[[1, 0.25]], [[1, 0.5]]]
    assert [data["sites"][n]["data"]["scans"] for n in data["sites"]] == [2, 3]
    assert [data["sites"][n]["data"]["positives"] for n in data["sites"]] == [1, 1]
    assert [data["sites"][n]["evaluation"]["cpm"] for n in data["sites"]] == pytest.approx([0.2, 0.3])
