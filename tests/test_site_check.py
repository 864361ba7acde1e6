"""The site check (is this test set shifted for this run?), the labelled re-fit's precision at N images, and the
sentence that names the adaptation behind a run's calls."""

from __future__ import annotations

import math

import numpy as np
import pytest

from core.data.tasks import get_task
from core.errors import InputError
from core.infer.site_check import adaptation_text, combine, prevalence_check, training_prevalence
from core.metrics.intervals import Interval
from core.metrics.sample_size import threshold_precision
from core.metrics.site_prevalence import PREVALENCE_GAP, prevalence_far, side_prevalence

from core.train.plan import binary_spec, binary_task

_CXR3 = get_task("cxr-kermany")
CXR = binary_task(_CXR3, binary_spec(_CXR3, "pneumonia vs normal"))  # classes NORMAL, pneumonia


def _wilson_half_width(p: float, n: float, z: float = 1.959963984540054) -> float:
    """Wilson's score interval half-width, written out (Wilson 1927; Newcombe 1998 eq. 3)."""
    return z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)


def test_threshold_precision_is_wilsons_half_width_at_the_expected_counts():
    rows = threshold_precision(0.9, 0.8, 0.25, sizes=(20, 40, 80))
    assert [r.n for r in rows] == [20, 40, 80]
    for r in rows:
        assert r.n_positive == pytest.approx(r.n * 0.25) and r.n_negative == pytest.approx(r.n * 0.75)
        assert r.sensitivity_half_width == pytest.approx(_wilson_half_width(0.9, r.n * 0.25), rel=1e-9)
        assert r.specificity_half_width == pytest.approx(_wilson_half_width(0.8, r.n * 0.75), rel=1e-9)
    # More images, a tighter threshold; fewer positives, a looser sensitivity.
    assert rows[0].sensitivity_half_width > rows[1].sensitivity_half_width > rows[2].sensitivity_half_width
    assert all(r.sensitivity_half_width > r.specificity_half_width for r in rows)


@pytest.mark.parametrize("args, word", [((1.2, 0.8, 0.5), "sensitivity"), ((0.9, 0.8, 0.0), "share of positive"),
                                        ((0.9, 0.8, 1.0), "share of positive"), ((0.9, -0.1, 0.5), "specificity")])
def test_threshold_precision_refuses_impossible_inputs_by_name(args, word):
    with pytest.raises(InputError, match=word):
        threshold_precision(*args)
    with pytest.raises(InputError, match="at least 1"):
        threshold_precision(0.9, 0.8, 0.5, sizes=(0, 20))


def test_prevalence_far_needs_both_the_interval_and_the_gap():
    iv = lambda v, lo, hi: Interval(v, lo, hi, "test")  # noqa: E731
    assert prevalence_far(0.40, iv(0.62, 0.55, 0.68))            # outside, gap 0.22
    assert not prevalence_far(0.40, iv(0.62, 0.35, 0.80))        # inside a wide interval: chance
    assert not prevalence_far(0.40, iv(0.45, 0.43, 0.47))        # outside but only 0.05 apart
    assert prevalence_far(0.40, iv(0.40 + PREVALENCE_GAP, 0.45, 0.55))  # exactly the gap counts
    assert not prevalence_far(0.40, iv(float("nan"), float("nan"), float("nan")))
    assert not prevalence_far(0.40, iv(1e-6, 1e-6, 1e-6))  # EM ran to 0 on every resample: no verdict


def test_an_uninformative_model_gives_no_prevalence_verdict():
    """Near-constant probabilities (a model that tells nothing apart) send EM to the boundary on every resample:
    the zero-width interval is no evidence of a shift."""
    probs = np.tile([0.505, 0.495], (200, 1))
    result = side_prevalence(probs, np.zeros(200, dtype=bool), [1], training=0.526, n_resamples=50)
    assert result.estimated.value < 0.01 and result.estimated.width == pytest.approx(0.0, abs=1e-9)
    assert not result.far


def _site(prevalence: float, n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Calibrated probabilities at a 0.5 training prior for a site at `prevalence` (the truth is known): scores
    drawn from the class-conditional densities the model was calibrated on (label shift only)."""
    rng = np.random.default_rng(seed)
    truth = rng.random(n) < prevalence
    logit = np.where(truth, rng.normal(1.5, 1.0, n), rng.normal(-1.5, 1.0, n))
    # With equal-variance normals at +-1.5 and prior 0.5, the posterior is sigmoid(3 x logit).
    p_pos = 1.0 / (1.0 + np.exp(-3.0 * logit))
    probs = np.column_stack([1.0 - p_pos, p_pos])  # NORMAL, pneumonia
    return probs, truth


def test_side_prevalence_recovers_a_known_site_prevalence_and_flags_it():
    probs, truth = _site(0.8, 600, seed=1)
    result = side_prevalence(probs, probs[:, 1] >= 0.5, [1], training=0.5, n_resamples=100)
    assert result.estimated.contains(truth.mean())
    assert abs(result.estimated.value - 0.8) < 0.05
    assert result.far and result.gap > 0.25
    same_probs, same_truth = _site(0.5, 600, seed=2)
    same = side_prevalence(same_probs, same_probs[:, 1] >= 0.5, [1], training=0.5, n_resamples=100)
    assert same.estimated.contains(0.5) and not same.far


def test_balanced_head_is_estimated_from_its_calibration_prior_but_compared_with_the_training_counts():
    probs, truth = _site(0.5, 600, seed=3)  # calibrated at 0.5 (a class-balanced head)
    card = {"training_prior": {"classes": ["NORMAL", "pneumonia"], "prior": [0.5, 0.5], "counts": [300, 100],
                               "basis": "balanced"}}
    assert training_prevalence(card, CXR) == (0.25, 0.5, "the training images' class counts")
    result, source = prevalence_check(probs, (probs[:, 1] >= 0.5).astype(int), CXR, card, n_resamples=100)
    assert result.estimated.contains(truth.mean())  # EM started from the prior the probabilities are calibrated to
    assert result.training == 0.25 and result.far  # ...and 0.5 is far from the 25% pneumonia it was trained on


def test_training_prevalence_falls_back_to_the_operating_point_counts():
    point = {"view": "pneumonia vs normal", "positive": ["pneumonia"], "negative": ["NORMAL"], "threshold": 0.4,
             "rule": "youden", "target": None, "sensitivity": 0.9, "specificity": 0.8, "n_positive": 30,
             "n_negative": 70}
    share, calibrated, source = training_prevalence({"operating_point": point}, CXR)
    assert share == calibrated == pytest.approx(0.3) and "100 images" in source
    assert training_prevalence({}, CXR) is None


def test_the_audit_verdict_alone_flags_the_site():
    shift = {"flagged": True, "reasons": ["test images are brighter"], "domain_classifier": {"auc": 0.91}}
    check = combine("run-a", "ts-b", CXR, shift, None)
    assert check.flagged and check.audit_flagged and not check.prevalence_flagged
    assert check.domain_auc == 0.91 and "brighter" in check.summary()
    quiet = combine("run-a", "ts-b", CXR, {"flagged": False, "reasons": []}, None)
    assert not quiet.flagged and quiet.audit_status == "not flagged"
    assert combine("run-a", "ts-b", CXR, None, None).audit_status == "not run"


def test_adaptation_text_names_a_recalibrated_run_and_is_silent_for_a_plain_one():
    assert adaptation_text({"operating_point": {"threshold": 0.5}}, "plain") is None
    assert adaptation_text(None) is None
    card = {"recalibration": {"source_run": "run-src", "sample_size": 40, "data": "/x/site_b", "temperature": 1.3,
                              "operating_point": {"threshold": 0.312}}}
    text = adaptation_text(card, "R (recalibrated)")
    assert text.startswith("Calls from run R (recalibrated), recalibrated with labels on 40 images of site_b")
    assert "threshold 0.312" in text and "temperature 1.30" in text and "run-src" in text


def test_adapting_needs_the_right_to_start_a_run(workspace):
    from core.infer.site_check import adapt_to_test_set
    from core.store.access import AccessDenied, Actor

    with pytest.raises(AccessDenied, match="start run needs the role admin or researcher; 'ann' \\(role reader\\)"):
        adapt_to_test_set(workspace, "run-x", "ts-y", actor=Actor("ann", "reader"))
    assert workspace.list_runs() == []
