"""Framework-free core, one sub-package per concern; nothing here imports FATE.

- `imaging`: CT volumes (DICOM, MetaImage), world/voxel geometry, patch cutting.
- `data`: candidate and annotation CSVs, the memory-mapped patch dataset, per-epoch negative sampling.
- `learning`: the 3D ResNet, local training and prediction, model files and signatures.
- `federation`: the round loop, early stopping, training state and checkpoints.
- `privacy`: patient-level DP-SGD and hospital-level DP-FedAvg.
- `evaluation`: the official LUNA16 FROC/CPM, candidate AUC, submissions.
- `synthetic`: sample hospitals (used through `fate-lung generate-data`).
"""
