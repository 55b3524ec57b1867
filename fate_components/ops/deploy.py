"""Three FATE sites on one machine: a FATE-Flow each, federation over RabbitMQ, scheduling through nginx.

`up` starts, under one root directory: a private RabbitMQ node (Debian's rabbitmq-server,
management plugin on), one FATE-Flow per site (own home, sqlite database, ports and party id;
computing standalone, federation rabbitmq, `proxy_name: nginx`) and nginx routing FATE-Flow's
inter-site commands by their `dest-party-id` header. Every process is recorded by pid in
`deploy.json`; `down` stops them by pid. The coordinator (arbiter) keeps the conf's party id
and is served by the FATE-Flow of the site that shares it (hospital_a, 9999), as in FATE's
own examples.
"""
from __future__ import annotations

import base64
import json
import os
import shutil
import signal
import string
import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import asdict, dataclass, field
from pathlib import Path

from fate_components.core.errors import LungError

from . import flow_server
from .jobs import parse_sites

TEMPLATES = Path(__file__).resolve().parent / "deploy_templates"   # package data (pyproject.toml)
STATE = "deploy.json"
RABBITMQ_BIN = Path("/usr/lib/rabbitmq/bin")   # the real scripts; /usr/sbin's wrappers switch to user rabbitmq
HOST = "127.0.0.1"
MQ_USER, MQ_PASSWORD = "fate", "fate"


class DeployError(LungError):
    """The multi-site deployment could not be started, reached or stopped."""


@dataclass
class DeployedSite:
    """One site's FATE-Flow process in the deployment (recorded in deploy.json)."""

    name: str
    party_id: str
    home: str
    http_port: int = 0
    pid: int = 0


@dataclass
class Deployment:
    root: str
    amqp_port: int
    mng_port: int
    dist_port: int
    epmd_port: int
    nginx_port: int
    sites: dict[str, DeployedSite] = field(default_factory=dict)
    rabbitmq_pid: int = 0
    nginx_pid: int = 0

    @property
    def rabbitmq_dir(self) -> Path:
        return Path(self.root) / "rabbitmq"

    @property
    def nginx_dir(self) -> Path:
        return Path(self.root) / "nginx"

    def client(self, site: str):
        from fate_client.flow_sdk import FlowClient

        return FlowClient(ip=HOST, port=self.sites[site].http_port, version="v2")

    def site_of_party(self, party_id: str) -> DeployedSite:
        for site in self.sites.values():
            if site.party_id == str(party_id):
                return site
        raise DeployError(f"party id {party_id} is not a site of this deployment "
                          f"({', '.join(f'{s.name} {s.party_id}' for s in self.sites.values())})")

    def save(self) -> None:
        data = asdict(self)
        (Path(self.root) / STATE).write_text(json.dumps(data, indent=2))

    @classmethod
    def load(cls, root: Path) -> "Deployment | None":
        path = Path(root) / STATE
        if not path.exists():
            return None
        data = json.loads(path.read_text())
        data["sites"] = {k: DeployedSite(**v) for k, v in data["sites"].items()}
        return cls(**data)


def _render(template: str, out: Path, **values) -> Path:
    text = string.Template((TEMPLATES / template).read_text()).substitute(**values)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text)
    return out


def check_system() -> None:
    """RabbitMQ and nginx come from Debian's packages (deploy/install_system.sh)."""
    missing = [what for what, path in (("rabbitmq-server", RABBITMQ_BIN / "rabbitmq-server"),
                                       ("nginx", shutil.which("nginx") or "/usr/sbin/nginx"))
               if not Path(path).exists()]
    if missing:
        raise DeployError(f"{' and '.join(missing)} not installed: run `bash deploy/install_system.sh` "
                          f"(apt-get install rabbitmq-server nginx)")
    try:
        import pika  # noqa: F401  (FATE's RabbitMQ federation imports it in every task)
    except ImportError as e:
        raise DeployError("pika is missing from the environment: pip install pika==1.2.1") from e


def _rabbitmq_env(d: Deployment) -> dict[str, str]:
    base = d.rabbitmq_dir
    return {**os.environ,
            "HOME": str(base / "home"),                  # the Erlang cookie: server and CLI must share it
            "RABBITMQ_NODENAME": f"fate_lung_{d.amqp_port}@localhost",
            "RABBITMQ_NODE_IP_ADDRESS": HOST, "RABBITMQ_NODE_PORT": str(d.amqp_port),
            "RABBITMQ_DIST_PORT": str(d.dist_port), "ERL_EPMD_PORT": str(d.epmd_port),
            "RABBITMQ_MNESIA_BASE": str(base / "mnesia"), "RABBITMQ_LOG_BASE": str(base / "log"),
            "RABBITMQ_PID_FILE": str(base / "rabbitmq.pid"),
            "RABBITMQ_CONFIG_FILE": str(base / "rabbitmq.conf"),
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(base / "enabled_plugins"),
            "RABBITMQ_CONF_ENV_FILE": str(base / "rabbitmq-env.conf"),
            "PATH": f"{RABBITMQ_BIN}:/usr/lib/erlang/bin:{os.environ.get('PATH', '')}"}


def _management_api(d: Deployment, path: str, timeout: float = 3.0):
    request = urllib.request.Request(f"http://{HOST}:{d.mng_port}/api/{path}")
    token = base64.b64encode(f"{MQ_USER}:{MQ_PASSWORD}".encode()).decode()
    request.add_header("Authorization", f"Basic {token}")
    with urllib.request.urlopen(request, timeout=timeout) as response:
        return json.loads(response.read())


def start_rabbitmq(d: Deployment, timeout_s: float = 90.0) -> None:
    base = d.rabbitmq_dir
    for sub in ("home", "mnesia", "log"):
        (base / sub).mkdir(parents=True, exist_ok=True)
    (base / "rabbitmq-env.conf").touch()   # empty: ignore /etc/rabbitmq/rabbitmq-env.conf
    _render("rabbitmq.conf", base / "rabbitmq.conf", host=HOST, amqp_port=d.amqp_port, mng_port=d.mng_port,
            user=MQ_USER, password=MQ_PASSWORD)
    env = _rabbitmq_env(d)
    subprocess.run([str(RABBITMQ_BIN / "rabbitmq-plugins"), "--offline", "enable", "rabbitmq_management"],
                   env=env, check=True, capture_output=True, cwd=base)
    log = open(base / "log" / "stdout.log", "ab")
    proc = subprocess.Popen([str(RABBITMQ_BIN / "rabbitmq-server")], env=env, stdout=log, stderr=subprocess.STDOUT,
                            stdin=subprocess.DEVNULL, cwd=base, start_new_session=True)
    d.rabbitmq_pid = proc.pid
    d.save()

    def answers() -> bool:
        try:
            _management_api(d, "overview")
            return True
        except (urllib.error.URLError, ConnectionError, OSError):
            return False

    _wait_until(proc, answers, "rabbitmq-server", f"RabbitMQ's management API on port {d.mng_port}", base / "log",
                timeout_s)


def start_nginx(d: Deployment, timeout_s: float = 20.0) -> None:
    prefix = d.nginx_dir
    for sub in ("logs", "tmp"):
        (prefix / sub).mkdir(parents=True, exist_ok=True)
    upstreams = "\n".join(f"  upstream flow_{s.party_id} {{ server {HOST}:{s.http_port}; }}   # {s.name}"
                          for s in d.sites.values())
    routes = "\n".join(f"    {s.party_id} flow_{s.party_id};" for s in d.sites.values())
    conf = _render("nginx.conf", prefix / "nginx.conf", prefix=prefix, upstreams=upstreams, routes=routes,
                   host=HOST, port=d.nginx_port)
    nginx = shutil.which("nginx") or "/usr/sbin/nginx"
    check = subprocess.run([nginx, "-t", "-c", str(conf), "-p", str(prefix)], capture_output=True, text=True)
    if check.returncode:
        raise DeployError(f"nginx rejected {conf}: {check.stderr.strip()}")
    log = open(prefix / "logs" / "stdout.log", "ab")
    proc = subprocess.Popen([nginx, "-c", str(conf), "-p", str(prefix)], stdout=log, stderr=subprocess.STDOUT,
                            start_new_session=True)
    d.nginx_pid = proc.pid
    d.save()
    _wait_until(proc, lambda: flow_server._port_open(HOST, d.nginx_port), "nginx", f"nginx on {HOST}:{d.nginx_port}",
                prefix / "logs", timeout_s)


def _wait_until(proc: subprocess.Popen, ready, name: str, what: str, logs: Path, timeout_s: float) -> None:
    """Poll `ready()` until it holds; fail early, naming the logs, if the process exits first."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise DeployError(f"{name} exited with code {proc.returncode}; see {logs}")
        if ready():
            return
        time.sleep(0.5)
    raise DeployError(f"{what} did not answer in {timeout_s:.0f} s; see {logs}")


def _site_overrides(d: Deployment) -> tuple[dict, dict]:
    from ruamel import yaml

    text = string.Template((TEMPLATES / "site_service_conf.yaml").read_text()).substitute(
        host=HOST, nginx_port=d.nginx_port, amqp_port=d.amqp_port, mng_port=d.mng_port, user=MQ_USER,
        password=MQ_PASSWORD)
    route_table = {s.party_id: {"host": HOST, "port": d.amqp_port} for s in d.sites.values()}
    return yaml.safe_load(text), {"rabbitmq_route_table.yaml": route_table}


def start_site(d: Deployment, name: str, extra_env: dict[str, str] | None = None) -> DeployedSite:
    site = d.sites[name]
    overrides, files = _site_overrides(d)
    server = flow_server.start(Path(site.home), party_id=site.party_id, http_port=site.http_port or None,
                               conf_overrides=overrides, conf_files=files, extra_env=extra_env)
    site.http_port, site.pid = server.http_port, server.pid
    d.save()
    return site


def up(root: Path, conf: dict, extra_env: dict[str, str] | None = None) -> Deployment:
    """Start RabbitMQ, one FATE-Flow per site of `conf` (one per party id), and nginx; or return the running one."""
    check_system()
    root = Path(root).resolve()
    running = Deployment.load(root)
    if running is not None:
        if is_up(running):
            return running
        down(root)
    root.mkdir(parents=True, exist_ok=True)
    ports = set()
    while len(ports) < 5:
        ports.add(flow_server.free_port(HOST))
    amqp, mng, dist, epmd, nginx_port = sorted(ports)
    d = Deployment(root=str(root), amqp_port=amqp, mng_port=mng, dist_port=dist, epmd_port=epmd,
                   nginx_port=nginx_port)
    for site in parse_sites(conf):
        if site.role != "arbiter" and site.party_id not in {s.party_id for s in d.sites.values()}:
            d.sites[site.name] = DeployedSite(name=site.name, party_id=site.party_id,
                                              home=str(root / "sites" / site.name),
                                              http_port=flow_server.free_port(HOST))
    d.save()
    try:
        start_rabbitmq(d)
        for name in d.sites:
            start_site(d, name, extra_env)
        start_nginx(d)
    except BaseException:
        down(root)
        raise
    return d


def is_up(d: Deployment) -> bool:
    return (flow_server._pid_alive(d.rabbitmq_pid) and flow_server._pid_alive(d.nginx_pid)
            and all(flow_server._pid_alive(s.pid) for s in d.sites.values()))


def stop_site(d: Deployment, name: str) -> None:
    flow_server.stop(Path(d.sites[name].home))


def stop_rabbitmq(d: Deployment) -> None:
    # rabbitmq-server traps TERM and stops the node; its epmd daemon outlives the node and is ours too
    # (a private port), so it is told to exit as well.
    flow_server.stop_process_group(d.rabbitmq_pid, signal.SIGTERM, timeout_s=60)
    epmd = shutil.which("epmd", path=_rabbitmq_env(d)["PATH"])
    if epmd:
        subprocess.run([epmd, "-kill"], env={**os.environ, "ERL_EPMD_PORT": str(d.epmd_port)}, capture_output=True)


def down(root: Path) -> bool:
    """Stop everything `up` started under `root`, by pid. True if anything was running."""
    d = Deployment.load(Path(root).resolve())
    if d is None:
        return False
    was_running = any(flow_server._pid_alive(p) for p in (d.rabbitmq_pid, d.nginx_pid,
                                                          *(s.pid for s in d.sites.values())))
    flow_server.stop_process_group(d.nginx_pid, signal.SIGQUIT, timeout_s=30)
    for name in d.sites:
        stop_site(d, name)
    stop_rabbitmq(d)
    (Path(d.root) / STATE).unlink(missing_ok=True)
    return was_running
