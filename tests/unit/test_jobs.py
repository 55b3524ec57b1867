import copy
import json
from pathlib import Path

import pytest

from fate_components.core.errors import ConfigError
from fate_components.ops.jobs import compile_dag, load_json, parse_sites

ROOT = Path(__file__).resolve().parents[2]
DSL = load_json(ROOT / "dsl" / "lung.json")
CONF = load_json(ROOT / "conf" / "lung_conf.json")


def test_compiles_three_hospitals_and_a_coordinator():
    # Execute
    dag = compile_dag(DSL, CONF)["dag"]
    # Assert
    assert dag["parties"] == [{"role": "guest", "party_id": ["9999"]},
                              {"role": "host", "party_id": ["10000", "10001"]},
                              {"role": "arbiter", "party_id": ["9999"]}]
    warehouse = dag["tasks"]["reader_all"]["inputs"]["data"]["site_data"]["data_warehouse"]
    assert [(w["namespace"], w["parties"][0]["party_id"][0]) for w in warehouse] == [
        ("hospital_a", "9999"), ("hospital_b", "10000"), ("hospital_c", "10001")]
    trainer = dag["tasks"]["trainer"]
    assert trainer["stage"] == "train" and trainer["dependent_tasks"] == ["reader_all"]
    assert trainer["parameters"]["batch_size"] == 16 and trainer["parameters"]["learning_rate"] == 1e-4
    assert trainer["parameters"]["weight_decay"] == 1e-5 and trainer["parameters"]["local_epochs"] == 3
    assert dag["party_tasks"]["host_10001"]["tasks"]["trainer"]["parameters"]["site_name"] == "hospital_c"


def test_dag_is_a_valid_fate_dag_for_flow_job_submit():
    from fate_flow.entity.spec.dag import DAGSchema, DAGSpec

    # Execute: through JSON, as `flow job submit -c` reads it, into FATE-Flow's own pydantic models
    text = json.dumps(compile_dag(DSL, CONF))
    schema = DAGSchema.parse_obj(json.loads(text))
    # DAGSchema.dag is Union[DAGSpec, Any]: an invalid DAG would silently stay a dict, so parse it as DAGSpec too.
    spec = DAGSpec.parse_obj(json.loads(text)["dag"])
    # Assert: FATE-Flow reads our tasks, parties and inputs as we meant them
    assert isinstance(schema.dag, DAGSpec) and schema.schema_version == "2.2.0" and schema.kind == "fate"
    assert spec.stage == "train" and spec.conf.initiator_party_id == "9999" == spec.conf.scheduler_party_id
    assert {(p.role, tuple(p.party_id)) for p in spec.parties} == {
        ("guest", ("9999",)), ("host", ("10000", "10001")), ("arbiter", ("9999",))}
    assert {name: (t.component_ref, t.stage) for name, t in spec.tasks.items()} == {
        "reader_all": ("luna16_reader", "default"), "trainer": ("homo_lung_nn", "train"),
        "evaluation": ("lung_evaluation", "default")}
    assert [p.role for p in spec.tasks["trainer"].parties] == ["guest", "host", "arbiter"]
    reader_input = spec.tasks["reader_all"].inputs.data["site_data"]["data_warehouse"]
    assert [(c.namespace, c.name, c.parties[0].role, c.parties[0].party_id) for c in reader_input] == [
        ("hospital_a", "luna16", "guest", ["9999"]), ("hospital_b", "luna16", "host", ["10000"]),
        ("hospital_c", "luna16", "host", ["10001"])]
    train_input = spec.tasks["trainer"].inputs.data["train_data"]["task_output_artifact"]
    assert (train_input.producer_task, train_input.output_artifact_key) == ("reader_all", "output_data")
    assert spec.tasks["trainer"].dependent_tasks == ["reader_all"]
    assert spec.party_tasks["host_10000"].tasks["trainer"].parameters == {"site_name": "hospital_b"}


def test_predict_dsl_needs_the_training_job():
    dsl = load_json(ROOT / "dsl" / "lung_predict.json")
    with pytest.raises(ConfigError, match="--model-job"):
        compile_dag(dsl, CONF)
    dag = compile_dag(dsl, CONF, model_job={"model_id": "123", "model_version": "0"})["dag"]
    source = dag["tasks"]["trainer"]["inputs"]["model"]["input_model"]["model_warehouse"]
    assert source == {"model_id": "123", "model_version": "0", "producer_task": "trainer",
                      "output_artifact_key": "output_model", "parties": source["parties"]}
    assert "rounds" not in dag["tasks"]["trainer"]["parameters"]  # train-stage options do not leak into predict


@pytest.mark.parametrize("mutate, message", [
    (lambda c: c["parameters"]["common"]["trainer"].update(learning_rte=0.1),
     "parameter 'learning_rte' of task 'trainer' .* Did you mean 'learning_rate'"),
    (lambda c: c["sites"]["hospital_b"].update(party_id="ten"), "site 'hospital_b' has party_id 'ten'"),
    (lambda c: c["sites"]["hospital_c"].update(party_id="10000"),
     "sites 'hospital_b' and 'hospital_c' share host party_id 10000"),
    (lambda c: c["sites"]["hospital_a"].update(role="host"), "exactly one site must be guest"),
    (lambda c: c["sites"]["hospital_b"].update(role="hots"), "site 'hospital_b' has role 'hots'"),
    (lambda c: c["sites"]["hospital_b"]["tables"].pop("site"), "site 'hospital_b' .* has no table 'site'"),
    (lambda c: c["sites"].pop("coordinator"), r"runs on role\(s\) \['arbiter'\] but the conf has no such site"),
    (lambda c: c["parameters"]["sites"].update(hospital_x={}), "site 'hospital_x', not in 'sites'"),
])
def test_bad_conf_is_refused_with_a_clear_message(mutate, message):
    conf = copy.deepcopy(CONF)
    mutate(conf)
    with pytest.raises(ConfigError, match=message):
        compile_dag(DSL, conf)


def test_unknown_component_and_input_are_named():
    dsl = copy.deepcopy(DSL)
    dsl["components"]["trainer"]["component"] = "homo_lung"
    with pytest.raises(ConfigError, match="unknown component 'homo_lung'. Did you mean 'homo_lung_nn'"):
        compile_dag(dsl, CONF)
    dsl = copy.deepcopy(DSL)
    dsl["components"]["trainer"]["inputs"]["train_data"]["task"] = "reader"
    with pytest.raises(ConfigError, match="refers to unknown task 'reader'"):
        compile_dag(dsl, CONF)


def test_sites_parse_with_names_roles_and_ids():
    sites = {s.name: (s.role, s.party_id) for s in parse_sites(CONF)}
    assert sites == {"hospital_a": ("guest", "9999"), "hospital_b": ("host", "10000"),
                     "hospital_c": ("host", "10001"), "coordinator": ("arbiter", "9999")}
