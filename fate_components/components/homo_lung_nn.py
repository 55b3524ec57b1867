"""FATE component `homo_lung_nn`: federated averaging of the 3D ResNet; stages train and predict."""
# No `from __future__ import annotations` here: FATE reads the annotations as live objects.

import logging

from fate.components.core import ARBITER, GUEST, HOST, Role, cpn, params

logger = logging.getLogger(__name__)


@cpn.component(roles=[GUEST, HOST, ARBITER])
def homo_lung_nn(ctx, role):
    ...


@homo_lung_nn.train()
def train(
    ctx,
    role: Role,
    train_data: cpn.data_directory_input(roles=[GUEST, HOST],
                                         desc="patch dataset from luna16_reader: every candidate, memory-mapped; "
                                        "the validation split is by patient"),
    test_data: cpn.data_directory_input(roles=[GUEST, HOST], optional=True,
                                        desc="patch dataset from luna16_reader in predict mode, scored with the "
                                             "final model (optional in train, required in predict)"),
    warm_start_model: cpn.model_directory_input(roles=[GUEST, HOST], optional=True,
                                                desc="a model from an earlier job to start from"),
    output_model: cpn.model_directory_output(roles=[GUEST, HOST, ARBITER], optional=True),
    predictions: cpn.data_directory_output(roles=[GUEST, HOST], optional=True,
                                           desc="predictions.csv and a LUNA16 submission.csv for test_data"),
    site_name: cpn.parameter(type=str, default="", desc="human name of this site, used in messages and metrics"),
    rounds: cpn.parameter(type=params.conint(gt=0), default=20, desc="federated rounds"),
    local_epochs: cpn.parameter(type=params.conint(gt=0), default=3, desc="local epochs per round"),
    batch_size: cpn.parameter(type=params.conint(gt=0), default=16, desc="patches per batch"),
    learning_rate: cpn.parameter(type=params.confloat(gt=0), default=1e-4, desc="optimiser learning rate"),
    weight_decay: cpn.parameter(type=params.confloat(ge=0), default=1e-5, desc="optimiser weight decay"),
    optimizer: cpn.parameter(type=params.string_choice(["adam", "adamw", "sgd"]), default="adam",
                             desc="optimiser (sgd uses momentum 0.9)"),
    lr_schedule: cpn.parameter(type=params.string_choice(["constant", "cosine"]), default="constant",
                               desc="cosine: anneal the learning rate to min_learning_rate over the rounds"),
    min_learning_rate: cpn.parameter(type=params.confloat(ge=0), default=0.0, desc="end of the cosine schedule"),
    fedprox_mu: cpn.parameter(type=params.confloat(ge=0), default=0.0,
                              desc="FedProx proximal term for non-IID sites (0 = plain FedAvg)"),
    patience: cpn.parameter(type=params.conint(ge=0), default=0,
                            desc="stop after this many rounds without a better global validation loss and keep the "
                                 "best round's model (0 = off)"),
    model: cpn.parameter(type=dict, default={}, desc="3D ResNet options: widths, blocks, groups, dropout"),
    aggregation: cpn.parameter(type=params.string_choice(["paillier", "fate_masks", "plaintext"]), default="paillier",
                               desc="paillier: FATE's Paillier, the arbiter adds ciphertexts; fate_masks: FATE's "
                                    "pairwise-mask secure aggregation (the arbiter sees the mean); plaintext: "
                                    "debugging only"),
    paillier: cpn.parameter(type=dict, default={}, desc="key_bits (2048), allow_weak_key, precision_bits (20), "
                                                        "clip (8.0), workers (\"auto\": Paillier processes per site, "
                                                        "the cores shared by the sites on this machine, 1 to 16)"),
    allow_plaintext: cpn.parameter(type=bool, default=False, desc="required to run aggregation=plaintext"),
    strict_check: cpn.parameter(type=bool, default=True,
                                desc="also require the same torch version at every site (architecture always checked)"),
    use_3d_aug: cpn.parameter(type=bool, default=True,
                              desc="random flips and 90-degree rotations of training patches, plus shifts and "
                                   "intensity jitter if aug_shift_voxels / aug_intensity_jitter > 0 (never at "
                                   "prediction)"),
    aug_shift_voxels: cpn.parameter(type=params.conint(ge=0, le=4), default=0,
                                    desc="random shifts of up to this many voxels per axis (1.5 mm each; 0 = off)"),
    aug_intensity_jitter: cpn.parameter(type=params.confloat(ge=0, le=0.5), default=0.0,
                                        desc="random gain 1 +- this and offset +- half of it per patch (0 = off)"),
    negatives_per_positive: cpn.parameter(type=params.confloat(ge=0), default=10.0,
                                          desc="each local epoch trains on every positive plus this many negatives "
                                               "per positive, drawn afresh from all of the site's training "
                                               "negatives (0 = every negative, every epoch)"),
    hard_negative_fraction: cpn.parameter(type=params.confloat(ge=0, le=1), default=0.0,
                                          desc="share of each epoch's negatives taken from those the round's model "
                                               "scores highest (rescored every round; 0 = off; not with dp "
                                               "mode sample)"),
    dp: cpn.parameter(type=dict, default={},
                      desc="differential privacy: mode (none | sample: patient-level DP-SGD | client: hospital-level "
                           "DP-FedAvg), noise_multiplier, max_grad_norm, delta, max_epsilon, accountant (rdp), "
                           "secure_noise (noise from Opacus' secure_mode CSPRNG; needs torchcsprng)"),
    seed: cpn.parameter(type=int, default=0, desc="seed of the initial weights and batch order"),
    threads: cpn.parameter(type=params.conint(gt=0), default=1,
                           desc="torch threads per party (one process runs per party)"),
    inference_precision: cpn.parameter(type=params.string_choice(["auto", "float32", "bfloat16"]), default="auto",
                                       desc="precision of the final scoring of test_data: auto is bfloat16 where the "
                                            "CPU (AVX512-BF16, AMX) or GPU computes it natively, else float32; "
                                            "bfloat16 is ~1.5x faster there, scores within ~3e-3"),
    federation_timeout: cpn.parameter(type=params.confloat(gt=0), default=1800.0,
                                      desc="seconds the coordinator waits for a hospital's message before it fails "
                                           "the job naming that hospital; hospitals wait twice as long, so the "
                                           "coordinator's message is the one on record (FATE's RabbitMQ federation "
                                           "has no timeout)"),
    checkpoint_dir: cpn.parameter(type=str, default="",
                                  desc="a site-local directory: after every round the site saves a checkpoint there "
                                       "(set per site under parameters.sites; empty = none)"),
    resume: cpn.parameter(type=bool, default=False,
                          desc="continue from the last round completed by every site, from checkpoint_dir"),
    device: cpn.parameter(type=str, default="auto",
                          desc="where a site trains and predicts: auto (CUDA when torch sees a GPU, else the CPU), "
                               "cpu, cuda or cuda:N; CUDA trains with mixed precision; dp mode sample runs on "
                               "the CPU only; a device a site lacks fails every party before round 1"),
):
    from fate_components.components import _trainer, _watchdog

    _trainer.limit_threads(threads)
    timeout = federation_timeout if role.is_arbiter else 2 * federation_timeout
    watchdog = _watchdog.FederationWatchdog(timeout, label=lambda party: f"{party[0]} {party[1]}")
    watchdog.install(ctx.federation)
    from fate_components.core.learning.model import ModelConfig
    from fate_components.core.learning.training import TrainConfig
    from fate_components.core.privacy.dp import DPConfig

    try:   # the watchdog stops whatever fails, a setting included
        config = TrainConfig(rounds=rounds, local_epochs=local_epochs, batch_size=batch_size,
                             learning_rate=learning_rate, weight_decay=weight_decay, optimizer=optimizer, seed=seed,
                             use_3d_aug=use_3d_aug, lr_schedule=lr_schedule, min_learning_rate=min_learning_rate,
                             fedprox_mu=fedprox_mu, patience=patience, aug_shift_voxels=aug_shift_voxels,
                             aug_intensity_jitter=aug_intensity_jitter, negatives_per_positive=negatives_per_positive,
                             hard_negative_fraction=hard_negative_fraction)
        job = _trainer.TrainJob(site_name=site_name or role.name, config=config, privacy=DPConfig.from_dict(dp),
                                model=ModelConfig.from_dict(model or {}), aggregation=aggregation,
                                agg_options={"paillier": paillier, "allow_plaintext": allow_plaintext,
                                             "strict_check": strict_check},
                                checkpoint_dir=checkpoint_dir, resume=resume, inference_precision=inference_precision,
                                device=device)
        # On every party, the arbiter included, before any exchange.
        job.privacy.check_training(config.fedprox_mu, config.hard_negative_fraction)
        if role.is_arbiter:
            _trainer.train_arbiter(ctx, job, output_model)
        else:
            _trainer.train_site(ctx, job, _trainer.SiteArtifacts(train_data, test_data, warm_start_model,
                                                                 output_model, predictions))
    finally:
        watchdog.stop()


@homo_lung_nn.predict()
def predict(
    ctx,
    role: Role,
    # optional=True here as in train: FATE merges the stages' declarations into one component
    # description and refuses an artifact declared with different `optional` flags
    # (fate/components/core/component_desc/_component_artifact.py, AllowArtifactDescribes.merge);
    # FATE-Board draws the job graph from that description. A missing optional input arrives as
    # None (fate/components/core/component_desc/_component_io.py, _handle_input): checked below.
    test_data: cpn.data_directory_input(roles=[GUEST, HOST], optional=True,
                                        desc="patch dataset from luna16_reader in predict mode, scored with the "
                                             "final model (optional in train, required in predict)"),
    input_model: cpn.model_directory_input(roles=[GUEST, HOST], desc="model written by the train stage"),
    predictions: cpn.data_directory_output(roles=[GUEST, HOST], optional=True,
                                           desc="predictions.csv and a LUNA16 submission.csv for test_data"),
    threads: cpn.parameter(type=params.conint(gt=0), default=1, desc="torch threads"),
    device: cpn.parameter(type=str, default="auto", desc="auto (CUDA when torch sees a GPU, else the CPU), cpu, "
                                                          "cuda or cuda:N"),
    inference_precision: cpn.parameter(type=params.string_choice(["auto", "float32", "bfloat16"]), default="auto",
                                       desc="precision of the final scoring of test_data: auto is bfloat16 where the "
                                            "CPU (AVX512-BF16, AMX) or GPU computes it natively, else float32; "
                                            "bfloat16 is ~1.5x faster there, scores within ~3e-3"),
):
    if role.is_arbiter:
        logger.info("arbiter has no data to predict")
        return
    from fate_components.components import _trainer

    _trainer.require_predict_io(test_data, predictions)
    _trainer.limit_threads(threads)
    _trainer.predict_site(ctx, test_data, input_model, predictions, inference_precision, device)
