"""AppTest of "Refer when unsure": the Performance page's section on a table with referrals and on one without, and
the referral cost on the Penalties page (kept in the workspace, used by the report)."""

from __future__ import annotations

from pathlib import Path


from core.data.tasks import task_from_dict
from core.infer.predictions import REFERRED_COLUMN, read_predictions, write_predictions
from core.metrics.selective import ReferralBand, apply_band, operating_scores
from core.metrics.model_operating_point import operating_view
from core.report.referral_cost import DEFAULT_REFERRAL_NOTE, REFERRAL_COST_SETTING
from core.store import Workspace
from dashboard.widgets import plain
from tests.apptest import open_page

PERFORMANCE = "../pages/performance.py"
PENALTIES = "../pages/penalties.py"


def _with_referrals(seeded: dict) -> int:
    """Give the private workspace a predictions table whose model referred the cases scoring 0.3 to 0.7 on the
    urgent view; returns how many were referred."""
    ws = Workspace.open(seeded["root"])
    frame, meta = read_predictions(seeded["predictions_path"])
    task = task_from_dict(meta["task"])
    band = ReferralBand(0.3, 0.7, 0.05, 0.9, "test band", 100, 0.8, 0.04, "out-of-fold predictions", threshold=0.5,
                        width=0.85)
    referred = apply_band(operating_scores(frame[[f"prob_{c}" for c in task.classes]].to_numpy(), task.classes,
                                           operating_view(task)), band)
    if not referred.any():  # the tiny seeded model may be sure of everything: refer its least sure cases
        referred[:3] = True
    path = Path(seeded["root"]) / "predictions" / "referred.parquet"
    write_predictions(frame.assign(**{REFERRED_COLUMN: referred}), path, {**meta, "referral_band": band.to_dict()})
    ws.record_predictions(seeded["run_id"], seeded["test_set_id"], path, len(frame))
    return int(referred.sum()), len(frame)


def _metrics(at) -> dict[str, str]:
    return {m.label: m.value for m in at.metric}


def test_performance_shows_referrals_coverage_and_the_priced_error(own_seeded_workspace):
    n_referred, n = _with_referrals(own_seeded_workspace)
    at = open_page(PERFORMANCE, run_id=own_seeded_workspace["run_id"],
                   test_set_id=own_seeded_workspace["test_set_id"])
    metrics = _metrics(at)
    assert metrics["Referred to a reader"] == f"{n_referred:,} of {n:,}"
    assert metrics["Coverage (share called)"] == f"{(n - n_referred) / n:.1%}"
    assert "Error among calls made" in metrics and "Weighted error, referrals priced" in metrics
    assert metrics["Weighted error, referrals priced"] != metrics["Weighted error, every image called"]
    text = " ".join(m.value for m in at.markdown)
    band = ReferralBand.from_dict(read_predictions(Path(own_seeded_workspace["root"]) / "predictions" /
                                                   "referred.parquet")[1]["referral_band"])
    assert "Stored band" in text and plain(band.describe()) in text
    assert "scores from 0.300 to 0.700 are referred" in band.describe()
    charts = [c for c in at.get("plotly_chart")]
    assert len(charts) >= 2


def test_performance_without_referrals_says_every_case_was_called(own_seeded_workspace):
    at = open_page(PERFORMANCE, run_id=own_seeded_workspace["run_id"],
                   test_set_id=own_seeded_workspace["test_set_id"])
    assert any("refer nothing to a reader: every case was called" in i.value for i in at.info)
    assert "Referred to a reader" not in _metrics(at)


def test_referral_cost_is_edited_on_the_penalties_page_and_kept(own_seeded_workspace):
    seeded = own_seeded_workspace
    at = open_page(PENALTIES, run_id=seeded["run_id"], test_set_id=seeded["test_set_id"])
    editor = "pen_referral_oct-kermany_0"
    shown = at.session_state[f"{editor}_base"]
    assert shown == [0.5, 0.5, 0.5, 0.5]  # half the cheapest mistake of the paper's matrix (1)
    assert DEFAULT_REFERRAL_NOTE.startswith("default: 0.5 x the cheapest mistake")
    assert any(plain(DEFAULT_REFERRAL_NOTE) in c.value for c in at.caption)
    at.session_state[editor] = {"edited_rows": {0: {"CNV": 2.0}}, "added_rows": [], "deleted_rows": []}
    at.run()
    assert not at.exception
    saved = Workspace.open(seeded["root"]).get_setting(REFERRAL_COST_SETTING)
    assert saved == {"oct-kermany": [2.0, 0.5, 0.5, 0.5]}
    assert any("set on the Penalties page" in c.value for c in at.caption)
    from core.report import build_report

    report = build_report(Workspace.open(seeded["root"]), seeded["run_id"], seeded["test_set_id"], bootstrap=0,
                          include_readers=False)
    assert report["penalty"]["referral_cost"] == [2.0, 0.5, 0.5, 0.5]
    assert report["penalty"]["referral_cost_note"] == "set on the Penalties page"
