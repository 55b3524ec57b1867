"""Compile jobs: a fate-lung DSL (component graph) plus a conf (sites, tables, parameters) into a FATE 2.2 DAG.

This module only builds and checks the DAG; `runner.py` submits it and follows it.

DSL (`dsl/*.json`): which components run, on which roles, and how outputs feed inputs::

    {"components": {"trainer": {"component": "homo_lung_nn", "stage": "train",
                                "roles": ["guest", "host", "arbiter"],
                                "inputs": {"train_data": {"task": "reader_all", "output": "output_data"}}}}}

An input is one of ``{"table": KEY}`` (each site's own table KEY from the conf, i.e. what the
site bound with `flow table bind`), ``{"task": NAME, "output": KEY}`` (another task's output),
or ``{"model": {"task": NAME, "output": KEY}}`` (a model from the job named by ``--model-job``).

Conf (`conf/*.json`): ``sites`` maps a site name to its role, party id and tables;
``parameters.common`` holds per-task parameters for every site, ``parameters.sites.<name>``
per-site overrides; ``job`` holds FATE job options.
"""
from __future__ import annotations

import copy
import difflib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fate_components.core.errors import ConfigError

ROLES = ("guest", "host", "arbiter")
_STAGES = ("default", "train", "predict")


@dataclass(frozen=True)
class Site:
    """A site of the conf: its name, FATE role and party id, and its tables by key."""

    name: str
    role: str
    party_id: str
    tables: dict[str, dict[str, str]]


def _suggest(word: str, options) -> str:
    close = difflib.get_close_matches(word, list(options), n=1)
    hint = f" Did you mean {close[0]!r}?" if close else ""
    return f"{hint} Available: {sorted(options)}"


def load_json(path: Path) -> dict:
    path = Path(path)
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"{path}: file not found") from None
    except json.JSONDecodeError as e:
        raise ConfigError(f"{path}: not valid JSON (line {e.lineno}, column {e.colno}: {e.msg})") from None


def parse_sites(conf: dict) -> list[Site]:
    sites = conf.get("sites")
    if not isinstance(sites, dict) or not sites:
        raise ConfigError("conf: 'sites' must map each site name to {role, party_id, tables}")
    parsed = []
    for name, spec in sites.items():
        role = spec.get("role")
        if role not in ROLES:
            raise ConfigError(f"conf: site {name!r} has role {role!r}; expected one of {ROLES}")
        party_id = str(spec.get("party_id", "")).strip()
        if not party_id.isdigit():
            raise ConfigError(f"conf: site {name!r} has party_id {spec.get('party_id')!r}; expected a number")
        tables = spec.get("tables", {})
        for key, table in tables.items():
            if not (isinstance(table, dict) and table.get("namespace") and table.get("name")):
                raise ConfigError(f"conf: site {name!r} table {key!r} needs 'namespace' and 'name', found {table!r}")
        parsed.append(Site(name=name, role=role, party_id=party_id, tables=tables))
    counts = {r: sum(s.role == r for s in parsed) for r in ROLES}
    if counts["guest"] != 1:
        raise ConfigError(f"conf: exactly one site must be guest, found {counts['guest']}")
    if counts["arbiter"] > 1:
        raise ConfigError(f"conf: at most one arbiter, found {counts['arbiter']}")
    seen: dict[tuple[str, str], str] = {}
    for s in parsed:
        if s.role != "arbiter" and (s.role, s.party_id) in seen:
            raise ConfigError(f"conf: sites {seen[(s.role, s.party_id)]!r} and {s.name!r} share {s.role} "
                              f"party_id {s.party_id}; every hospital needs its own party id")
        seen[(s.role, s.party_id)] = s.name
    return parsed


def _component(name: str):
    from fate.components.core import load_component

    try:
        return load_component(name)
    except RuntimeError:
        known = ["luna16_reader", "homo_lung_nn", "lung_evaluation"]
        raise ConfigError(f"unknown component {name!r}.{_suggest(name, known)}") from None


def _stage_component(cpn, stage: str):
    if stage == "default":
        return cpn
    for sub in cpn.stage_components:
        if sub.name == stage:
            return sub
    raise ConfigError(f"component {cpn.name!r} has no stage {stage!r}; "
                      f"it has {[s.name for s in cpn.stage_components] or ['default']}")


def _all_parameters(cpn) -> set[str]:
    names = set(cpn.parameters.mapping)
    for sub in cpn.stage_components:
        names |= set(sub.parameters.mapping)
    return names


def _parties(sites: list[Site], roles) -> list[dict]:
    out = []
    for role in ROLES:
        if role in roles:
            ids = sorted({s.party_id for s in sites if s.role == role}, key=int)
            if ids:
                out.append({"role": role, "party_id": ids})
    return out


def _party_key(site: Site) -> str:
    return f"{site.role}_{site.party_id}"


def compile_dag(dsl: dict, conf: dict, *, model_job: dict | None = None) -> dict:
    """Return the FATE 2.2 DAG (a dict ready for `FlowClient.job.submit` or `flow job submit -c`)."""
    sites = parse_sites(conf)
    components = dsl.get("components")
    if not isinstance(components, dict) or not components:
        raise ConfigError("dsl: 'components' must map task names to component definitions")
    params_conf = conf.get("parameters", {})
    common, per_site = params_conf.get("common", {}), params_conf.get("sites", {})
    # One conf serves the training and the predict DSL: parameters of tasks that a DSL
    # does not run are ignored, as are a component's parameters for stages it does not run.
    site_names = {s.name for s in sites}
    for name in per_site:
        if name not in site_names:
            raise ConfigError(f"conf: parameters.sites names site {name!r}, not in 'sites'."
                              f"{_suggest(name, site_names)}")

    tasks: dict[str, Any] = {}
    party_tasks: dict[str, Any] = {}
    for task_name, spec in components.items():
        cpn_name = spec.get("component")
        stage = spec.get("stage", "default")
        if stage not in _STAGES:
            raise ConfigError(f"dsl: task {task_name!r} has stage {stage!r}; expected one of {_STAGES}")
        stage_cpn = _stage_component(_component(cpn_name), stage)
        roles = spec.get("roles", [r.name for r in stage_cpn.roles])
        task_sites = [s for s in sites if s.role in roles]
        missing = [r for r in roles if not any(s.role == r for s in sites)]
        if missing:
            raise ConfigError(f"dsl: task {task_name!r} runs on role(s) {missing} but the conf has no such site")
        known_params = set(stage_cpn.parameters.mapping)
        component_params = _all_parameters(_component(cpn_name))
        task_params = {}
        for key, value in {**spec.get("parameters", {}), **common.get(task_name, {})}.items():
            if key in known_params:
                task_params[key] = value
            elif key not in component_params:
                raise ConfigError(f"parameter {key!r} of task {task_name!r} ({cpn_name}) is unknown."
                                  f"{_suggest(key, component_params)}")
        inputs = _compile_inputs(task_name, spec.get("inputs", {}), stage_cpn, components, sites, roles, model_job)
        dependent = sorted({src["task"] for src in spec.get("inputs", {}).values() if "task" in src})
        task = {"component_ref": cpn_name, "stage": stage, "parties": _parties(sites, roles),
                "parameters": task_params}
        if dependent:
            task["dependent_tasks"] = dependent
        if inputs:
            task["inputs"] = inputs
        tasks[task_name] = task
        for site in task_sites:
            site_params = {}
            if "site_name" in known_params:
                site_params["site_name"] = site.name
            for key, value in per_site.get(site.name, {}).get(task_name, {}).items():
                if key in known_params:
                    site_params[key] = value
                elif key not in component_params:
                    raise ConfigError(f"parameter {key!r} for site {site.name!r}, task {task_name!r} is unknown."
                                      f"{_suggest(key, component_params)}")
            if site_params:
                entry = party_tasks.setdefault(_party_key(site), {
                    "parties": [{"role": site.role, "party_id": [site.party_id]}], "tasks": {}})
                entry["tasks"][task_name] = {"parameters": site_params}

    guest = next(s for s in sites if s.role == "guest")
    job_conf = {"initiator_party_id": guest.party_id, "scheduler_party_id": guest.party_id}
    job_conf.update(copy.deepcopy(conf.get("job", {}).get("fate", {})))
    if model_job:
        job_conf.setdefault("model_warehouse", {"model_id": model_job["model_id"],
                                                "model_version": str(model_job["model_version"])})
    stages = {t["stage"] for t in tasks.values()} - {"default"}
    dag = {"parties": _parties(sites, ROLES), "conf": job_conf,
           "stage": "predict" if stages == {"predict"} else "train",
           "tasks": tasks}
    if party_tasks:
        dag["party_tasks"] = party_tasks
    return {"dag": dag, "schema_version": "2.2.0", "kind": "fate"}


def _compile_inputs(task_name, inputs, stage_cpn, components, sites, roles, model_job) -> dict:
    arts = stage_cpn.artifacts
    data_keys, model_keys = set(arts.data_inputs), set(arts.model_inputs)
    compiled: dict[str, dict] = {}
    for key, src in inputs.items():
        if key not in data_keys | model_keys:
            raise ConfigError(f"dsl: task {task_name!r} has no input {key!r}.{_suggest(key, data_keys | model_keys)}")
        kind = "data" if key in data_keys else "model"
        data_roles = [r for r in roles if r != "arbiter"]
        if "table" in src:
            channels = []
            for site in sites:
                if site.role not in data_roles:
                    continue
                table = site.tables.get(src["table"])
                if table is None:
                    raise ConfigError(f"conf: site {site.name!r} ({site.role} {site.party_id}) has no table "
                                      f"{src['table']!r}, needed by task {task_name!r} input {key!r}")
                channels.append({"namespace": table["namespace"], "name": table["name"],
                                 "parties": [{"role": site.role, "party_id": [site.party_id]}]})
            compiled.setdefault(kind, {})[key] = {"data_warehouse": channels}
        elif "task" in src:
            if src["task"] not in components:
                raise ConfigError(f"dsl: task {task_name!r} input {key!r} refers to unknown task {src['task']!r}."
                                  f"{_suggest(src['task'], components)}")
            compiled.setdefault(kind, {})[key] = {"task_output_artifact": {
                "producer_task": src["task"], "output_artifact_key": src.get("output", "output_data"),
                "parties": _parties(sites, data_roles)}}
        elif "model" in src:
            if not model_job:
                raise ConfigError(f"dsl: task {task_name!r} loads a trained model; pass the training job with "
                                  f"--model-job JOB_ID")
            compiled.setdefault(kind, {})[key] = {"model_warehouse": {
                "model_id": model_job["model_id"], "model_version": str(model_job["model_version"]),
                "producer_task": src["model"]["task"],
                "output_artifact_key": src["model"].get("output", "output_model"),
                "parties": _parties(sites, data_roles)}}
        else:
            raise ConfigError(f"dsl: task {task_name!r} input {key!r} must be {{'table': ...}}, "
                              f"{{'task': ..., 'output': ...}} or {{'model': {{...}}}}, not {src!r}")
    return compiled
