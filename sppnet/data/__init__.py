"""sppnet.data: see docs/architecture.md."""
