"""Compare runs: two or more models on one test set: overlaid ROCs, DeLong and McNemar tests, learning curve."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from core.infer.predictions import task_of
from core.errors import InputError
from core.metrics.dashboard import available_views, urgent_view
from core.metrics.run_compare import data_size_label, learning_curve
from core.infer.imported import is_imported_run
from core.metrics.threshold_in_use import threshold_in_use
from core.plots import PointMarker, compare_roc_figure, learning_curve_figure, metric_bars_figure, series_colors
from dashboard import state
from dashboard.common import PredictionsFile, get_workspace, load_predictions, offered_predictions, remember_selection
from dashboard.downloads import figure_downloads, table_download
from core.train.run_folder import run_config, run_model_card, run_training_images
from dashboard.evaluation import active_penalty, aligned_runs, comparison_tables, run_view_scores
from dashboard.evaluation_ui import with_interval_text
from dashboard.subgroups_ui import compare_subgroups_section
from dashboard.widgets import plain, show_error, sticky_select

MAX_DEFAULT_RUNS = 6
METRICS = {"view_auc": ("AUC of the binary view", False), "accuracy": ("Accuracy", True),
           "balanced_accuracy": ("Balanced accuracy", True), "weighted_error": ("Weighted error", False),
           "macro_auc": ("Macro AUC (one-vs-rest)", False)}

st.title("Compare runs")
st.caption("Two or more trained models on the same test set, on the images they all scored: ROC curves overlaid, "
           "DeLong's test for AUCs, McNemar's test for correct calls, the metrics side by side, and a learning curve "
           "when runs differ in how much training data they used (full vs limited, TL100...TL10).")

ws = get_workspace()
rows, runs, test_sets = offered_predictions(ws)
if not rows:
    st.info("No predictions yet. Train models on the **Train** page and run them on a test set on the **Test sets** "
            "page.", icon=":material/info:")
    st.stop()
test_ids = sorted({r["dataset_id"] for r in rows},
                  key=lambda t: -sum(1 for r in rows if r["dataset_id"] == t))
current = st.session_state.get(state.TEST_SET_ID)
test_set_id = st.selectbox("Test set", test_ids, key="cmp_test", index=test_ids.index(current)
                           if current in test_ids else 0,
                           format_func=lambda t: test_sets.get(t, {}).get("name", t))
if test_set_id != current:
    remember_selection(test_set_id=test_set_id)
if (test_sets.get(test_set_id, {}).get("meta") or {}).get("synthetic"):
    st.info("This test set is **synthetic** (no real patient): the comparison shows how the product works.",
            icon=":material/science:")

on_set = {r["run_id"]: r for r in rows if r["dataset_id"] == test_set_id}
run_ids = sorted(on_set, key=lambda rid: -(runs.get(rid, {}).get("created") or 0))
names = [runs.get(rid, {}).get("name") or rid for rid in run_ids]
# Two runs may share a name; the id's tail tells them apart in legends and tables.
labels = {rid: (name if names.count(name) == 1 else f"{name} [{rid[-4:]}]") for rid, name in zip(run_ids, names)}
default = [rid for rid in run_ids[:MAX_DEFAULT_RUNS]]
chosen = st.multiselect("Runs to compare", run_ids, default=default, key=f"cmp_runs_{test_set_id}",
                        format_func=lambda rid: labels[rid])
if len(chosen) < 2:
    st.info("Choose at least two runs evaluated on this test set." + (
        " Only one run has predictions here: train another (e.g. a limited-data run) and run it on this test set."
        if len(run_ids) < 2 else ""), icon=":material/info:")
    st.stop()

sources = []
for rid in chosen:
    file = PredictionsFile.at(on_set[rid]["path"])
    sources.append((labels[rid], file, task_of(load_predictions(file)[1], runs.get(rid, {}).get("task"))))
sources = tuple(sources)
try:
    aligned = aligned_runs(sources)
except InputError as exc:
    show_error("These runs cannot be compared:", exc)
    st.stop()
task = aligned.task
dropped = {name: n for name, n in aligned.dropped.items() if n}
st.caption(f"{aligned.truth.size:,} images scored by every selected run." + (
    " Left out because another run lacks them: " + ", ".join(f"{plain(k)} {v:,}" for k, v in dropped.items())
    if dropped else ""))

views = available_views(task)
preferred = urgent_view(task) or views[0]
view_names = [v.name for v in views]
view_name = sticky_select("Binary view for ROC and DeLong", view_names, "cmp_view", default=preferred.name)
view = views[view_names.index(view_name)]
penalty = active_penalty(ws, task)
penalty_name = penalty.name
summary, pairs = comparison_tables(sources, view, penalty)
scores = run_view_scores(sources, view)
colors = series_colors([label for label, _, _ in sources])

def _own_threshold(rid: str):
    """The run's own threshold in use on this view (core.metrics.threshold_in_use): its model card's operating
    point, else the default. Compare shows every run at its own point, as its `predicted` calls were made."""
    try:
        card = run_model_card(runs.get(rid))
    except InputError:
        card = None
    return threshold_in_use((card or {}).get("operating_point"), None, view.name,
                            imported=is_imported_run(runs.get(rid)))  # scores from a file: no point came with them


in_use = {labels[rid]: _own_threshold(rid) for rid in chosen}
curves, points, at_point = {}, [], {}
for label, run_scores in scores.items():
    if run_scores.n_positive and run_scores.n_negative:
        curves[label] = (run_scores.curve(), run_scores.auc())
        point = run_scores.at_threshold(in_use[label].value)
        points.append(PointMarker.on_roc(f"{label} at {in_use[label].label}", point, color=colors[label]))
        rates = point.metrics()
        at_point[label] = {"threshold": in_use[label].label, "sensitivity": rates.sensitivity.value,
                           "sensitivity_low": rates.sensitivity.low, "sensitivity_high": rates.sensitivity.high,
                           "specificity": rates.specificity.value, "specificity_low": rates.specificity.low,
                           "specificity_high": rates.specificity.high}
if at_point:  # each run's sensitivity and specificity at its own operating point, beside its other numbers
    summary = summary.merge(pd.DataFrame([{"run": k, **v} for k, v in at_point.items()]), on="run", how="left")
if curves:
    fig = compare_roc_figure(curves, points, title=f"ROC: {view.name}")
    st.plotly_chart(fig, key="cmp_roc")
    figure_downloads(fig, f"compare-roc-{view.name}", key="cmp_roc_dl")
    st.caption("Markers: each run at its own operating point (the one stored with the model, else the default "
               "threshold), where its own calls were made. AUC intervals: DeLong. Curves drawn from at most 2,000 "
               "points each.")
else:
    st.info("This view has no positive or no negative cases among the shared images: no ROC curve.")

st.subheader("Metrics side by side")
shown = with_interval_text(summary, ["accuracy", "sensitivity", "specificity", "weighted_error", "view_auc"],
                           percent=False)
st.dataframe(shown, hide_index=True, key="cmp_summary",
             column_config={"view_auc": f"AUC ({view.name})", "threshold": "threshold in use", "ece": "ECE", "brier": "Brier",
                            "balanced_accuracy": st.column_config.NumberColumn(format="%.3f"),
                            "macro_auc": st.column_config.NumberColumn(format="%.3f")})
st.caption(f"Accuracy, sensitivity, specificity: Wilson interval; weighted error: penalty matrix "
           f"'{plain(penalty_name)}', normal approximation; AUC: DeLong. Class calls: each model's own calls (its "
           f"predictions' `predicted` column); sensitivity and specificity on {plain(view.name)} at each run's "
           "threshold in use.")
table_download(summary, "compare-runs-metrics", key="cmp_summary_csv")
metric = st.segmented_control("Metric to chart", list(METRICS), default="view_auc", key="cmp_metric",
                              format_func=lambda m: METRICS[m][0]) or "view_auc"
bars = metric_bars_figure(summary, metric, METRICS[metric][0], name_column="run", colors=colors,
                          title=METRICS[metric][0])
st.plotly_chart(bars, key="cmp_bars")
figure_downloads(bars, f"compare-{metric}", key="cmp_bars_dl")

st.subheader("Paired tests")
st.dataframe(pairs, hide_index=True, key="cmp_pairs",
             column_config={c: st.column_config.NumberColumn(format="%.4f") for c in
                            ("auc_a", "auc_b", "auc_difference", "auc_difference_low", "auc_difference_high",
                             "delong_z", "delong_p", "mcnemar_p")})
st.caption("DeLong: paired test of the two AUCs on the same cases. McNemar (exact): only_a_right / only_b_right are "
           "the images one run called right and the other wrong. p-values are not corrected for multiple pairs.")
table_download(pairs, "compare-runs-paired-tests", key="cmp_pairs_csv")

st.subheader("By subgroup")
compare_subgroups_section(ws, test_set_id, sources, aligned.image_ids, view)

st.subheader("Training data: full vs limited, learning curve")
facts = []
sizes = {}
for rid in chosen:
    config = run_config(runs.get(rid))
    sizes[labels[rid]] = run_training_images(runs.get(rid))
    facts.append({"run": labels[rid], "backbone": config.get("backbone"), "mode": config.get("mode"),
                  "training data": data_size_label(config.get("per_class"), config.get("fraction")),
                  "training images": sizes[labels[rid]], "class balancing": config.get("balance", "none"),
                  "run id": rid})
facts = pd.DataFrame(facts)
st.dataframe(facts, hide_index=True, key="cmp_facts")
table_download(facts, "compare-runs-training-data", key="cmp_facts_csv")
full = [r for r, size in zip(facts["run"], facts["training data"]) if size == "full training data"]
for limited in [r for r in facts["run"] if r not in full] if full else []:
    row = pairs[pairs["run_a"].isin([full[0], limited]) & pairs["run_b"].isin([full[0], limited])].iloc[0]
    auc = {row["run_a"]: row["auc_a"], row["run_b"]: row["auc_b"]}
    st.markdown(f"**Full vs limited** (as in Kermany et al.): {plain(full[0])} AUC {auc[full[0]]:.3f} vs "
                f"{plain(limited)} AUC {auc[limited]:.3f} on {plain(view.name)}; DeLong p = {row['delong_p']:.3g}, "
                f"McNemar p = {row['mcnemar_p']:.3g}.")
known = {k: v for k, v in sizes.items() if v}
if len(set(known.values())) >= 2:
    curve = learning_curve(summary, known, metric)
    fig = learning_curve_figure(curve, metric, METRICS[metric][0],
                                labels=dict(zip(facts["run"], facts["training data"])),
                                title=f"Learning curve: {METRICS[metric][0]} vs training images")
    st.plotly_chart(fig, key="cmp_learning")
    figure_downloads(fig, f"learning-curve-{metric}", key="cmp_learning_dl")
    table_download(curve, "learning-curve", key="cmp_learning_csv")
    st.caption("Compare like with like: the curve is only a learning curve if the runs share backbone, mode and "
               "recipe and differ only in the amount of training data (see the table).")
else:
    st.caption("A learning curve appears when the selected runs used different amounts of training data "
               "(per-class limits or fractions in their configs).")
