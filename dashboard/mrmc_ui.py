"""Experts page, MRMC tab: readings in (CSV or the simulated demo), the OR analysis, the planning calculator."""

from __future__ import annotations

import json

import pandas as pd
import streamlit as st

from core.errors import InputError
from core.metrics.jsonsafe import to_jsonable
from core.metrics.mrmc import MrmcResult, describe_difference, mrmc_analysis
from core.metrics.mrmc_figures import COVARIANCES, FIGURES
from core.metrics.mrmc_planning import ANALYSES, PilotStudy, mrmc_power, power_table
from core.plots.mrmc import mrmc_readers_figure
from core.readers.aided_study import aided_mrmc_readings, list_aided_studies
from core.readers.mrmc_readings import load_mrmc_readings
from core.readers.mrmc_simulated import DEMO_TREATMENTS, simulate_mrmc_study
from core.store import Workspace
from dashboard import state
from dashboard.downloads import figure_downloads
from dashboard.widgets import plain, show_error

SOURCES = {"demo": "Demo study (simulated readers)", "upload": "Upload readings (CSV)",
           "study": "An aided-vs-unaided reader study"}
FIGURE_LABELS = {"auc": "AUC (empirical)", "sensitivity": "Sensitivity at a threshold",
                 "specificity": "Specificity at a threshold"}
COVARIANCE_LABELS = {"jackknife": "Jackknife", "delong": "DeLong (AUC, crossed)", "unbiased": "Unbiased (AUC)"}
ANALYSIS_LABELS = {"rrrc": "Random readers and cases", "frrc": "Fixed readers", "rrfc": "Fixed cases"}


@st.cache_data(show_spinner=False, max_entries=4)
def demo_readings() -> pd.DataFrame:
    """The demo: 5 simulated readers x 120 cases, read unaided and aided (seeded, the same every time)."""
    return simulate_mrmc_study(readers=5, cases=120, seed=7)


@st.cache_data(show_spinner=False, max_entries=16)
def cached_analysis(readings: pd.DataFrame, figure: str, covariance: str, threshold: float | None) -> MrmcResult:
    return mrmc_analysis(readings, figure=figure, covariance=covariance, threshold=threshold)


def _study_readings(ws: Workspace | None, key: str) -> pd.DataFrame | None:
    studies = list_aided_studies(ws) if ws is not None else []
    if not studies:
        st.info("No aided-vs-unaided study yet: create one on the **Reader study** page.", icon=":material/info:")
        return None
    names = {s.id: s.name for s in studies}
    chosen = st.selectbox("Study", list(names), format_func=names.get, key=f"{key}_study")
    table = aided_mrmc_readings(ws, chosen)
    if table.empty:
        st.info("No reader has closed both sessions of this study yet.", icon=":material/info:")
        return None
    st.caption(f"Readers who closed both sessions: {table['reader'].nunique()}. Rating: the call and its "
               "confidence on a 10-point scale (1 = certainly not urgent ... 10 = certainly urgent).")
    return table


def readings_source(key: str, ws: Workspace | None = None) -> pd.DataFrame | None:
    """The readings from the chosen source; an upload is kept for the session once it parses."""
    source = st.radio("Readings", list(SOURCES), format_func=SOURCES.get, key=f"{key}_source", horizontal=True)
    if source == "study":
        return _study_readings(ws, key)
    if source == "demo":
        st.info("Demo: **SIMULATED readers** (made-up ratings from a statistical model of readers and cases), "
                f"each reading the same 120 cases {DEMO_TREATMENTS[0]} and {DEMO_TREATMENTS[1]}. The numbers show "
                "how the analysis works, not how real readers perform.", icon=":material/science:")
        return demo_readings()
    st.caption("CSV in long format, one row per reading: `reader, treatment, case, truth, rating` (truth 0/1; "
               "rating a confidence score or a probability; treatment = reading condition, e.g. unaided / aided). "
               "Every reader reads every case in every treatment, or cases are nested within readers or within "
               "treatments. Every problem is listed; nothing is analysed until the whole file is valid.")
    upload = st.file_uploader("MRMC readings CSV", type=["csv"], key=f"{key}_upload")
    if upload is not None and st.button("Analyse these readings", key=f"{key}_load", type="primary"):
        try:
            st.session_state[state.companion_key(key, "table")] = load_mrmc_readings(upload)
            st.session_state[state.companion_key(key, "name")] = upload.name
        except InputError as exc:
            show_error("These readings cannot be analysed (nothing was kept).", exc)
    table = st.session_state.get(state.companion_key(key, "table"))
    if table is None:
        st.info("No MRMC readings uploaded yet in this session.", icon=":material/info:")
        return None
    st.caption(f"Readings from {plain(st.session_state.get(state.companion_key(key, 'name'), 'the upload'))}: {len(table):,} rows.")
    return table


def _interval(low: float, high: float) -> str:
    return f"{low:.3f} to {high:.3f}"


def analysis_table(result: MrmcResult) -> pd.DataFrame:
    """One row per analysis: the global test and the first pair's difference."""
    rows = []
    for name, analysis, stat in (("rrrc", result.rrrc, "F"), ("frrc", result.frrc, "chi-square"),
                                 ("rrfc", result.rrfc, "F")):
        first = analysis.pairs[0]
        df = (f"{analysis.df_num:g}" if name == "frrc"
              else f"{analysis.df_num:g}, {analysis.df_den:.2f}")
        rows.append({"analysis": ANALYSIS_LABELS[name], "statistic": f"{stat} = {analysis.statistic:.3f}",
                     "df": df, "p": analysis.p, f"{first.first} - {first.second}": first.diff,
                     "interval": _interval(*first.ci95)})
    return pd.DataFrame(rows)


def treatment_table(result: MrmcResult) -> pd.DataFrame:
    rows = []
    for i, name in enumerate(result.treatment_names):
        row = {"treatment": name, "mean over readers": float(result.figures[i].mean())}
        for key, analysis in (("rrrc", result.rrrc), ("frrc", result.frrc), ("rrfc", result.rrfc)):
            row[ANALYSIS_LABELS[key]] = _interval(*analysis.treatments[name].ci95)
        rows.append(row)
    return pd.DataFrame(rows)


def reader_table(result: MrmcResult) -> pd.DataFrame:
    table = pd.DataFrame(result.figures.T, columns=list(result.treatment_names))
    table.insert(0, "reader", list(result.reader_names))
    return table


def analysis_section(readings: pd.DataFrame, key: str) -> MrmcResult | None:
    controls = st.columns(4)
    figure = controls[0].selectbox("Figure of merit", list(FIGURES), format_func=FIGURE_LABELS.get,
                                   key=f"{key}_figure")
    covariance = controls[1].selectbox("Covariance", list(COVARIANCES), format_func=COVARIANCE_LABELS.get,
                                       key=f"{key}_covariance",
                                       help="How the case-sampling (co)variances are estimated: jackknife "
                                            "(any figure, any design), DeLong or the unbiased estimator (AUC).")
    threshold = None
    if figure != "auc":
        default = 0.5 if readings["rating"].between(0, 1).all() else float(readings["rating"].median())
        threshold = controls[2].number_input("Positive when rating ≥", value=default, key=f"{key}_threshold")
    treatments = sorted(pd.unique(readings["treatment"].astype(str)))
    reference = controls[3].selectbox("Compare against", treatments, key=f"{key}_reference",
                                      index=treatments.index("unaided") if "unaided" in treatments else 0)
    try:
        result = cached_analysis(readings, figure, covariance, threshold)
    except InputError as exc:
        show_error("The MRMC analysis could not be run on these readings.", exc)
        return None
    for sentence in describe_difference(result, reference=reference):
        st.markdown(f"**{plain(sentence)}**")
    st.caption(f"Obuchowski-Rockette analysis with Hillis's degrees of freedom: {len(result.reader_names)} readers, "
               f"{result.n_cases} cases, design {result.design.replace('_', ' ')}, {covariance} covariance. "
               "Random readers and cases generalise to other readers and cases; fixed readers only to these "
               "readers; fixed cases only to these cases.")
    st.dataframe(analysis_table(result), hide_index=True, width="stretch", key=f"{key}_tests",
                 column_config={"p": st.column_config.NumberColumn(format="%.4f")})
    left, right = st.columns([3, 2])
    with left:
        fig = mrmc_readers_figure(result)
        st.plotly_chart(fig, key=f"{key}_figure_chart")
        figure_downloads(fig, "mrmc-readers", key=f"{key}_figure_dl")
    with right:
        st.dataframe(treatment_table(result), hide_index=True, width="stretch", key=f"{key}_treatments")
        st.dataframe(reader_table(result), hide_index=True, width="stretch", key=f"{key}_readers")
        components = pd.DataFrame([result.to_dict()["variance_components"]])
        st.dataframe(components, hide_index=True, width="stretch", key=f"{key}_components",
                     column_config={c: st.column_config.NumberColumn(format="%.3g") for c in components.columns})
    st.download_button("MRMC result (JSON)", json.dumps(to_jsonable(result.to_dict()), indent=2),
                       file_name="mrmc-result.json", mime="application/json", key=f"{key}_json")
    return result


def planning_section(result: MrmcResult, key: str) -> None:
    st.subheader("Plan a study")
    try:
        pilot = PilotStudy.from_result(result)
    except InputError as exc:
        st.info(plain(exc), icon=":material/info:")
        return
    observed = abs(result.rrrc.pairs[0].diff)
    cols = st.columns(4)
    effect = cols[0].number_input("Difference to detect", min_value=0.001, max_value=0.5, step=0.005,
                                  value=round(max(observed, 0.01), 3), format="%.3f", key=f"{key}_effect",
                                  help="In the figure of merit; the default is this study's own difference.")
    target = cols[1].slider("Target power", 0.5, 0.99, 0.8, step=0.01, key=f"{key}_power")
    analysis = cols[2].selectbox("Analysis", list(ANALYSES), format_func=ANALYSIS_LABELS.get, key=f"{key}_analysis")
    readers = cols[3].slider("Readers", 2, 30, (3, 15), key=f"{key}_readers_range")
    table = power_table(pilot, effect, range(readers[0], readers[1] + 1), target_power=target, analysis=analysis)
    st.caption(f"Pilot: this analysis ({pilot.n_cases} cases). Hillis, Obuchowski & Berbaum (2011): the case "
               "(co)variances shrink as cases are added; the reader x treatment variance does not, so with "
               "random readers a few readers may need very many cases, or never reach the power.")
    if table.empty:
        st.warning("No number of cases up to 100,000 reaches that power with these readers.")
    else:
        st.dataframe(table, hide_index=True, key=f"{key}_plan",
                     column_config={"power": st.column_config.NumberColumn(format="%.3f")})
    one = st.columns(3)
    n_readers = one[0].number_input("Readers in the planned study", 2, 200, 6, key=f"{key}_n_readers")
    n_cases = one[1].number_input("Cases in the planned study", 2, 100_000, 200, key=f"{key}_n_cases")
    estimate = mrmc_power(pilot, int(n_readers), int(n_cases), effect, analysis=analysis)
    one[2].metric("Power", f"{estimate.power:.1%}")
    st.markdown(plain(f"With {estimate.readers} readers and {estimate.cases} cases, a difference of {effect:.3f} "
                      f"is detected with {estimate.power:.0%} power ({ANALYSIS_LABELS[analysis].lower()}, "
                      "alpha 0.05)."))


def mrmc_section(ws: Workspace | None = None, key: str = "mrmc") -> None:
    """The whole MRMC tab (`ws`: where aided-vs-unaided reader studies are stored)."""
    st.subheader("Multi-reader multi-case (MRMC) study")
    st.caption("Does a reading condition (e.g. model-assisted vs unaided) change readers' accuracy, for readers "
               "and cases beyond these ones? The Obuchowski-Rockette method with Hillis's degrees of freedom, as "
               "in RJafroc, MRMCaov and OR-DBM MRMC (checked against their published Van Dyke results).")
    readings = readings_source(key, ws)
    if readings is None:
        return
    result = analysis_section(readings, key)
    if result is not None:
        planning_section(result, key)
