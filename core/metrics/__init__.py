"""Evaluation statistics: pure functions over arrays and tables, each interval checked against reference tools."""

from core.metrics.bootstrap import (RankedScores, bootstrap_ci, patient_groups, percentile_interval,
                                    resample_patient_counts, resample_weights)
from core.metrics.calibration import (ReliabilityBins, brier_score, expected_calibration_error, reliability_bins,
                                      top_label_reliability)
from core.metrics.comparisons import McNemarTest, compare_correctness, discordant_counts, mcnemar_test
from core.metrics.decision_curve import decision_curve
from core.metrics.diagnostic import DiagnosticMetrics, counts_from_labels, diagnostic_metrics
from core.metrics.imbalance import predictive_values_at_prevalence, prevalence_by_split
from core.metrics.intervals import Interval, proportion_ci
from core.metrics.jsonsafe import to_jsonable
from core.metrics.kappa import KappaResult, agreement_table, cohen_kappa, kappa_from_table
from core.metrics.likelihood_ratios import koopman_statistic, ratio_ci
from core.metrics.multiclass import (ClassResult, ConfusionMatrix, MulticlassSummary, balanced_accuracy,
                                     check_probabilities, class_indices, confusion_matrix, cross_entropy,
                                     macro_and_weighted_auc, multiclass_metrics)
from core.metrics.mrmc import MrmcResult, VarianceComponents, mrmc_analysis
from core.metrics.mrmc_planning import PilotStudy, cases_for_power, mrmc_power, power_table
from core.metrics.multilabel import MultilabelSummary, OrdinalAgreement, multilabel_metrics, ordinal_agreement
from core.metrics.operating import BinaryScores, OperatingPoint, RocCurve
from core.metrics.penalties import (DecisionComparison, compare_decision_rules, confusion_counts, decide,
                                    decision_confusion, expected_penalty, load_penalty_matrix, weighted_error)
from core.metrics.referral import BinaryViewData, binary_view_data, referral_score, referral_tiers, tier_confusion
from core.metrics.roc import AucEstimate, DeLongTest, delong_test, roc_auc
from core.metrics.uncertainty import bootstrap_macro_auc, bootstrap_multiclass

__all__ = [
    # the named API
    "Interval", "proportion_ci", "DiagnosticMetrics", "diagnostic_metrics", "AucEstimate", "roc_auc",
    "DeLongTest", "delong_test", "McNemarTest", "mcnemar_test", "KappaResult", "cohen_kappa", "weighted_error",
    # 2x2 helpers and ratio intervals
    "counts_from_labels", "ratio_ci", "koopman_statistic",
    # multi-class
    "ConfusionMatrix", "confusion_matrix", "ClassResult", "MulticlassSummary", "multiclass_metrics",
    "balanced_accuracy", "cross_entropy", "macro_and_weighted_auc", "class_indices", "check_probabilities",
    # referral levels and binary views
    "referral_score", "referral_tiers", "tier_confusion", "BinaryViewData", "binary_view_data",
    # operating points and decision rules
    "BinaryScores", "OperatingPoint", "RocCurve", "decide", "expected_penalty", "decision_confusion",
    "confusion_counts", "DecisionComparison", "compare_decision_rules", "load_penalty_matrix",
    # uncertainty
    "bootstrap_ci", "bootstrap_multiclass", "bootstrap_macro_auc", "resample_weights", "patient_groups",
    "percentile_interval",
    "RankedScores", "resample_patient_counts",
    # imbalance, calibration
    "prevalence_by_split", "predictive_values_at_prevalence", "ReliabilityBins", "reliability_bins",
    "top_label_reliability", "expected_calibration_error", "brier_score",
    # multi-label and ordinal
    "MultilabelSummary", "multilabel_metrics", "OrdinalAgreement", "ordinal_agreement",
    # agreement tables, comparisons
    "agreement_table", "kappa_from_table", "discordant_counts", "compare_correctness",
    # JSON output
    "to_jsonable",
    # multi-reader multi-case studies
    "mrmc_analysis", "MrmcResult", "VarianceComponents", "PilotStudy", "mrmc_power", "cases_for_power",
    "power_table",
    # decision curves
    "decision_curve",
]
