"""sppnet.engine: see docs/architecture.md."""
