"""LUNA16's official FROC/CPM, candidate-level AUC, and reading submissions."""
