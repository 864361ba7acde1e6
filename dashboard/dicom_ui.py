"""The DICOM choices of the add-data form: how pixel values become grey levels, what to do with multi-frame files,
and whether files with burned-in annotation are kept."""

from __future__ import annotations

import streamlit as st

from core.data.dicom import FRAME_POLICIES, WINDOW_PRESETS, WINDOWINGS, DicomOptions

_WINDOW_TEXT = {"file": "the file's own window (VOI LUT or Window Center/Width)",
                "full": "full range of the rescaled values",
                **{name: f"preset '{name}' (centre {c:g}, width {w:g})" for name, (c, w) in WINDOW_PRESETS.items()}}
_FRAME_TEXT = {"refuse": "refuse them (listed as problems)", "first": "use their first frame"}


def dicom_options_ui(key: str) -> DicomOptions | None:
    """DICOM windowing, multi-frame and burned-in policies (None: the defaults, so non-DICOM data is unaffected)."""
    with st.expander("DICOM options (used only when the data holds DICOM files)", icon=":material/tune:"):
        left, right = st.columns(2)
        window = left.selectbox("Windowing", WINDOWINGS, format_func=_WINDOW_TEXT.get, key=f"{key}_dicom_window",
                                help="Rescale Slope/Intercept are always applied first; MONOCHROME1 is inverted.")
        frames = right.selectbox("Multi-frame files", FRAME_POLICIES, format_func=_FRAME_TEXT.get,
                                 key=f"{key}_dicom_frames")
        keep = st.checkbox("Keep files with burned-in annotation", key=f"{key}_dicom_burned_in",
                           help="Files whose header says BurnedInAnnotation = YES may show the patient's name or "
                                "ID in the image itself, which de-identification cannot remove. They are refused "
                                "unless this is ticked; kept ones are stored flagged (PatientIdentityRemoved = NO).")
    options = DicomOptions(window, frames, "keep" if keep else "refuse")
    return None if options.is_default else options
