"""sppnet.inference: running a trained detector over a dataset - detections
(:func:`predict`, several heads at once with :func:`predict_variants`), scores
(:func:`evaluate`) and annotated images (:func:`draw_predictions`)."""

from sppnet.inference.draw import draw_predictions, draw_threshold
from sppnet.inference.evaluate import evaluate
from sppnet.inference.predict import predict, predict_variants

__all__ = ["draw_predictions", "draw_threshold", "evaluate", "predict", "predict_variants"]
