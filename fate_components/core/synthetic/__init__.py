"""Synthetic LUNA16-style hospitals for the demo, tests and benchmarks (`fate-lung generate-data`)."""
