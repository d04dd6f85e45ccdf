"""Detection metrics: PASCAL VOC AP (VOC2007 11-point and VOC2010+ area), COCO AP through
pycocotools, PR-curve plots, the results JSON, COCO detection results files, Hoiem et al.'s
error analysis and the HTML report. See docs/evaluation.md and docs/data.md."""

from sppnet.evaluation.coco import COCO_METRICS, COCOResult, evaluate_coco
from sppnet.evaluation.coco_results import (
    ResultsFileError,
    predictions_to_coco_results,
    read_coco_results,
    write_coco_results,
)
from sppnet.evaluation.errors import (
    ErrorAnalysis,
    MatchedDetections,
    analyze_errors,
    match_detections,
)
from sppnet.evaluation.html_report import write_report
from sppnet.evaluation.plots import plot_pr_curves, save_pr_curves
from sppnet.evaluation.report import format_table, results_to_dict, write_results_json
from sppnet.evaluation.voc import METRICS, ClassResult, VOCResult, average_precision, evaluate_voc

__all__ = [
    "COCO_METRICS",
    "METRICS",
    "COCOResult",
    "ClassResult",
    "ErrorAnalysis",
    "MatchedDetections",
    "ResultsFileError",
    "VOCResult",
    "analyze_errors",
    "average_precision",
    "evaluate_coco",
    "evaluate_voc",
    "format_table",
    "match_detections",
    "plot_pr_curves",
    "predictions_to_coco_results",
    "read_coco_results",
    "results_to_dict",
    "save_pr_curves",
    "write_coco_results",
    "write_report",
    "write_results_json",
]
