"""Differential privacy: patient-level DP-SGD (Opacus) and hospital-level DP-FedAvg."""
