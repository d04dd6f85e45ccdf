"""sppnet.inference: running a trained detector over a dataset - detections
(:func:`predict`, several heads at once with :func:`predict_variants`), scores
(:func:`evaluate`) and annotated images (:func:`draw_predictions`); one image with its
proposals overlapping its conv trunk (:class:`OverlappedDetector`)."""

from sppnet.inference.draw import draw_predictions, draw_threshold
from sppnet.inference.evaluate import evaluate
from sppnet.inference.overlap import OverlappedDetector
from sppnet.inference.predict import predict, predict_variants

__all__ = [
    "OverlappedDetector",
    "draw_predictions",
    "draw_threshold",
    "evaluate",
    "predict",
    "predict_variants",
]
