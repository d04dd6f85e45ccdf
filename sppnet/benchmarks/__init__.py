"""Benchmarks that print tables (not tests): each returns its figures as a JSON-ready dict.

- :mod:`sppnet.benchmarks.data`: seconds and memory to index a 10,000-image COCO file
  (``sppnet bench data``).
- :mod:`sppnet.benchmarks.detect`: SPP-net vs R-CNN detection speed, and the detector's latency
  beside torchvision's Faster R-CNN models (``sppnet bench detect``).
- :mod:`sppnet.benchmarks.ops`: ``roi_spp`` vs ``roi_pool`` per level vs a per-region loop,
  forward and forward+backward (``sppnet bench ops``).
"""
