"""Detection metrics: PASCAL VOC AP (VOC2007 11-point and VOC2010+ area), COCO AP through
pycocotools, PR-curve plots, the results JSON and COCO detection results files. See
docs/evaluation.md and docs/data.md."""

from sppnet.evaluation.coco import COCO_METRICS, COCOResult, evaluate_coco
from sppnet.evaluation.coco_results import (
    ResultsFileError,
    predictions_to_coco_results,
    read_coco_results,
    write_coco_results,
)
from sppnet.evaluation.plots import plot_pr_curves, save_pr_curves
from sppnet.evaluation.report import format_table, results_to_dict, write_results_json
from sppnet.evaluation.voc import METRICS, ClassResult, VOCResult, average_precision, evaluate_voc

__all__ = [
    "COCO_METRICS",
    "METRICS",
    "COCOResult",
    "ClassResult",
    "ResultsFileError",
    "VOCResult",
    "average_precision",
    "evaluate_coco",
    "evaluate_voc",
    "format_table",
    "plot_pr_curves",
    "predictions_to_coco_results",
    "read_coco_results",
    "results_to_dict",
    "save_pr_curves",
    "write_coco_results",
    "write_results_json",
]
