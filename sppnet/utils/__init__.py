"""sppnet.utils: see docs/architecture.md."""
