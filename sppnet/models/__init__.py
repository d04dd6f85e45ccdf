"""sppnet.models: see docs/architecture.md."""
