"""sppnet.proposals: see docs/architecture.md."""
