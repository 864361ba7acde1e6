"""Performance page, decision-curve tab: net benefit of the model, treat all / none, readers, penalty threshold."""

from __future__ import annotations

import numpy as np
import pandas as pd
import streamlit as st

from core.errors import InputError
from core.metrics.decision_curve import decision_curve, penalty_threshold
from core.plots.decision import decision_curve_figure
from core.readers import list_readings
from core.readers.decision_points import reader_net_benefits
from dashboard.downloads import figure_downloads, table_download
from dashboard.evaluation import active_penalty
from dashboard.widgets import plain

THRESHOLDS = np.round(np.arange(0, 100) / 100, 2)


def decision_section(ev) -> None:
    """ev: the page's Evaluation (task, view, scores, selection, workspace)."""
    st.caption("Net benefit = true positives per patient - false positives per patient x t / (1 - t), where t is "
               "the risk at which acting (referring, treating) is worth it: t = 0.2 means one missed case costs as "
               "much as four unnecessary referrals (Vickers & Elkin 2006). A strategy is useful where its curve "
               f"lies above both treat all and treat none. Risk: the view's score ({plain(ev.view.name)}).")
    penalty = active_penalty(ev.ws, ev.task)
    penalty_name = penalty.name
    implied = penalty_threshold(penalty, ev.task.classes, ev.view.positive)
    cols = st.columns(2)
    shown = cols[0].slider("Thresholds shown up to", 0.05, 0.99, 0.6, step=0.01, key="perf_dca_max")
    default = float(np.clip(round(sum(implied) / 2, 2), 0.01, 0.99)) if implied else 0.2
    at = cols[1].slider("Readers' net benefit at threshold", 0.01, 0.99, default, step=0.01, key="perf_dca_at",
                        help="A reader's yes/no call has one net benefit per threshold; the points sit here. "
                             "The default comes from the penalty matrix when it implies a threshold.")
    try:
        curve = decision_curve(ev.scores.truth, ev.scores.scores, THRESHOLDS[THRESHOLDS <= shown])
    except InputError as exc:
        st.info(f"No decision curve for this view: {plain(exc)}")
        return
    readers = pd.DataFrame()
    readings = list_readings(ev.ws, ev.selection.dataset_id)
    if not readings.empty:
        try:
            readers = reader_net_benefits(readings, ev.selection.frame, ev.task, ev.view, at)
            readers["threshold"] = at
        except InputError as exc:
            st.caption(f"Readers are not shown: {plain(exc)}")
    fig = decision_curve_figure(curve, readers, implied, title=f"Decision curve: {ev.view.name}")
    st.plotly_chart(fig, key="perf_dca_chart")
    figure_downloads(fig, f"decision-curve-{ev.view.name}", key="perf_dca_dl")
    if implied is None:
        st.caption(f"The penalty matrix '{plain(penalty_name)}' does not imply a threshold for this view "
                   "(no cost on one kind of error).")
    else:
        low, high = implied
        span = f"{low:.2f}" if high - low < 1e-9 else f"between {low:.2f} and {high:.2f}"
        st.caption(f"Penalty matrix '{plain(penalty_name)}' (Penalties page): a false positive against a missed "
                   f"case implies acting at a risk {span} (shaded or dotted).")
    if not readers.empty:
        if readers["simulated"].any():
            st.caption("Diamonds are SIMULATED readers (demo), not real clinicians.")
        table = readers[["reader_id", "images", "net_benefit", "simulated"]].copy()
        table.loc[len(table)] = {"reader_id": "model", "images": len(ev.scores), "simulated": False,
                                 "net_benefit": float(decision_curve(ev.scores.truth, ev.scores.scores,
                                                                     [at])["net_benefit"].iloc[0])}
        st.dataframe(table, hide_index=True, key="perf_dca_readers",
                     column_config={"net_benefit": st.column_config.NumberColumn(format="%.4f")})
    table_download(curve, f"decision-curve-{ev.view.name}", key="perf_dca_csv")
