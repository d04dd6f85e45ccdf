"""sppnet.evaluation: see docs/architecture.md."""
