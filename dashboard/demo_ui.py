"""The home page's "Try the demo" path: one click per step, each step showing where the demo stands."""

from __future__ import annotations

import streamlit as st

from core.errors import InputError
from core.store import Workspace
from dashboard import state
from dashboard.access_ui import current_actor
from dashboard.common import ROOT, remember_selection


def _page(filename: str) -> str:
    return str(ROOT / "pages" / filename)


def _demo_runs(ws: Workspace) -> list[dict]:
    # The synthetic demo's runs (the real demo's carry extra.demo = "real").
    return [r for r in ws.list_runs() if (r.get("config") or {}).get("extra", {}).get("demo") is True]


def demo_path(ws: Workspace, demo: dict) -> None:
    """Show the next step of the demo with a button that does it."""
    from core.train import launch_run, reconcile_runs
    from core.train.demo import demo_run_config
    from core.train.scores import score_title

    reconcile_runs(ws)
    runs = _demo_runs(ws)
    done = [r for r in runs if r["status"] == "succeeded"]
    active = [r for r in runs if r["status"] in ("queued", "running")]
    test_set_id = demo["test_set_id"]
    step1, step2, step3 = st.columns(3)

    with step1:
        st.markdown("**1. Train**")
        if done:
            st.success(f"Trained: {score_title(done[0]['best_metric_name'])} "
                       f"{(done[0]['best_metric'] or float('nan')):.3f} on validation", icon=":material/check:")
        elif active:
            st.info(f"Training ({active[0]['status']})...", icon=":material/hourglass_top:")
            st.page_link(_page("train.py"), label="Follow it live on the Train page", icon=":material/monitoring:")
        else:
            if st.button("Train the demo model", type="primary", key="demo_train", icon=":material/rocket_launch:"):
                try:
                    run_id = launch_run(demo_run_config(ws), ws, actor=current_actor())
                except InputError as exc:
                    st.error("The demo run could not start.")
                    st.text(str(exc))
                else:
                    st.session_state[state.TRAIN_SELECTED_RUN] = run_id
                    st.switch_page(_page("train.py"))
            st.caption("EfficientNet-Lite0 with its ImageNet weights, frozen; only a new head is trained.")

    with step2:
        st.markdown("**2. Test**")
        evaluated = done and ws.find_predictions(done[0]["id"], test_set_id) is not None
        if evaluated:
            st.success("Predictions on the demo test split are ready.", icon=":material/check:")
        elif done:
            # In a background thread: leaving the page does not stop it, and the bar follows it.
            from dashboard.testsets_ui import inference_panel

            inference_panel(ws, done[0]["id"], test_set_id, key="demo")
        else:
            st.caption("After training.")

    with step3:
        st.markdown("**3. Evaluate**")
        if evaluated:
            if st.session_state.get(state.RUN_ID) is None:
                remember_selection(run_id=done[0]["id"], test_set_id=test_set_id)
            for filename, label, icon in (("performance.py", "Performance", ":material/monitoring:"),
                                          ("penalties.py", "Penalties", ":material/balance:"),
                                          ("experts.py", "Experts vs model", ":material/groups:"),
                                          ("explain.py", "Explain mistakes", ":material/image_search:")):
                st.page_link(_page(filename), label=label, icon=icon)
        else:
            st.caption("After testing.")


def real_demo_form(ws: Workspace) -> None:
    """Build a small real demo from a MedMNIST .npz on this server and start its training (core.data.demo
    .build_real_demo decides who may, and from which folders), then follow the run on the Train page."""
    from core.data.demo import REAL_DEMO_TEST_PER_CLASS, REAL_DEMO_TRAIN_PER_CLASS, build_real_demo
    from core.train import launch_run
    from core.train.demo import real_demo_run_config
    from dashboard.widgets import plain

    st.caption(f"Point at a MedMNIST .npz already on this server (for example pneumoniamnist.npz): up to "
               f"{REAL_DEMO_TRAIN_PER_CLASS} images per class of its training split and {REAL_DEMO_TEST_PER_CLASS} "
               "of its test split (val when it has none) are copied into the workspace, registered as a training "
               "set and a held-out test set, and a model is trained on them (frozen EfficientNet-Lite0 features, "
               "a logistic head: about a minute on two CPU cores).")
    with st.form("real_demo"):
        path = st.text_input("MedMNIST .npz on the server", key="real_demo_npz",
                             placeholder="/data/medmnist/pneumoniamnist.npz")
        if not st.form_submit_button("Build the real demo and train", icon=":material/rocket_launch:"):
            return
    try:
        with st.spinner("Copying and registering the images..."):
            built = build_real_demo(ws, path, actor=current_actor())
        run_id = launch_run(real_demo_run_config(ws), ws, actor=current_actor())
    except InputError as exc:
        st.error(plain(f"The real demo could not be built: {exc}"), icon=":material/error:")
        return
    remember_selection(test_set_id=built["test_set_id"])
    st.session_state[state.TRAIN_SELECTED_RUN] = run_id
    st.switch_page(_page("train.py"))
