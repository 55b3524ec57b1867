"""The main job across three FATE sites (see `deploy.py`): where each site answers, pre-check, submit at the guest's.

`ThreeSites` is what `fate-lung deploy demo` gives the demo pipeline (`demo.run`); `submit` runs
any job of a conf on a running deployment.
"""
from __future__ import annotations

from pathlib import Path

from . import deploy, runner
from .demo import DemoSites
from .jobs import compile_dag, parse_sites
from .runner import SiteEndpoints
from .site_data import table_bound


def endpoints(d: deploy.Deployment, conf: dict) -> SiteEndpoints:
    """Each site's own FATE-Flow client and home (the arbiter's are those of the site sharing its party id)."""
    sites = parse_sites(conf)
    served = {s.name: d.site_of_party(s.party_id) for s in sites}
    guest = next(s for s in sites if s.role == "guest")
    return SiteEndpoints(clients={name: d.client(host.name) for name, host in served.items()},
                         homes={name: Path(host.home) for name, host in served.items()}, initiator=guest.name)


def preflight(d: deploy.Deployment, conf: dict) -> None:
    """Refuse before submitting: a party id no site serves, or a table not bound at its own site."""
    problems = []
    for site in parse_sites(conf):
        try:
            home = d.site_of_party(site.party_id)
        except deploy.DeployError as e:
            problems.append(f"{site.name} ({site.role}): {e}")
            continue
        for table in site.tables.values():
            if not table_bound(d.client(home.name), table["namespace"], table["name"]):
                problems.append(f"{site.name} ({site.role} {site.party_id}): table {table['namespace']}/"
                                f"{table['name']} is not bound in {home.name}'s FATE-Flow")
    if problems:
        raise runner.JobError("refused before submitting anything:\n  " + "\n  ".join(problems))


def submit(d: deploy.Deployment, conf: dict, dsl: dict, *, printer=print, timeout_s: float = 3600,
           model_job: dict | None = None) -> runner.JobOutcome:
    """Pre-check, then submit at the guest's FATE-Flow and follow it round by round (`printer=None`: silently)."""
    preflight(d, conf)
    return runner.submit_and_follow(endpoints(d, conf), compile_dag(dsl, conf, model_job=model_job),
                                    parse_sites(conf), timeout_s=timeout_s, printer=printer)


class ThreeSites(DemoSites):
    """The demo on three FATE sites under `root`: started (or found running) by `deploy.up`."""

    bound_line = "each hospital bound its own directory into its own FATE-Flow"

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.deployment: deploy.Deployment | None = None

    def start(self, conf: dict) -> SiteEndpoints:
        d = self.deployment = deploy.up(self.root, conf)
        print(f"[1/5] three FATE sites up: RabbitMQ amqp :{d.amqp_port} (management :{d.mng_port}), nginx "
              f":{d.nginx_port}; " + ", ".join(f"{s.name} (party {s.party_id}) FATE-Flow :{s.http_port}"
                                               for s in d.sites.values()))
        return endpoints(d, conf)

    def training_line(self, trainer: dict) -> str:
        return (f"training at hospital_a's FATE-Flow: {trainer['rounds']} rounds, Paillier aggregation over "
                f"RabbitMQ")

    def preflight(self, conf: dict) -> None:
        preflight(self.deployment, conf)

    def report_again(self, job_id: str) -> str:
        return ""   # `fate-lung report` reads one standalone FATE-Flow's home

    def finish(self) -> None:
        print("      stop the three sites with: fate-lung deploy down")
