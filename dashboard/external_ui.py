"""The "Import a model" form: an ONNX model or TorchScript archive trained elsewhere, with its model card filled in
here or uploaded (JSON/TOML), registered as a run by core.infer.model_exchange.import_model."""

from __future__ import annotations

import json
import tempfile
import tomllib
from pathlib import Path

import streamlit as st

from core.data.tasks import get_task, list_tasks
from core.errors import InputError
from core.infer.model_exchange import import_model
from core.models.external import OUTPUT_KINDS
from core.models.preprocess import DEFAULT_FRAMING, FRAMINGS
from core.store import Workspace
from dashboard.widgets import show_error

CUSTOM = "(my own classes)"
MODEL_TYPES = ["onnx", "pt", "pth", "ts", "zip"]


def _numbers(text: str) -> list[float] | str:
    """Comma-separated numbers as typed; the text itself when it is not numbers (the card check names it)."""
    try:
        return [float(v) for v in text.replace(";", ",").split(",") if v.strip()]
    except ValueError:
        return text


def _card_fields(key: str) -> dict:
    """The card as a dict from the form's widgets (checked by core when imported)."""
    cols = st.columns(3)
    task = cols[0].selectbox("Task", [*list_tasks(), CUSTOM], key=f"{key}_task",
                             help="The label schema the model's classes belong to.")
    default = ", ".join(get_task(task).classes) if task != CUSTOM else ""
    classes = cols[1].text_input("Classes, in the model's output order", value=default, key=f"{key}_classes_{task}",
                                 help="Comma-separated: the class of output column 1, 2, ... A binary model with "
                                      "one output column: name the negative class, then the positive one.")
    output = cols[2].selectbox("The model outputs", list(OUTPUT_KINDS), format_func=lambda k: OUTPUT_KINDS[k],
                               key=f"{key}_output")
    cols = st.columns(4)
    height = cols[0].number_input("Input height (px)", 8, 4096, 224, key=f"{key}_height")
    width = cols[1].number_input("Input width (px)", 8, 4096, 224, key=f"{key}_width")
    channels = cols[2].radio("Channels", [3, 1], horizontal=True, key=f"{key}_channels",
                             format_func=lambda c: "3 (RGB)" if c == 3 else "1 (greyscale)")
    framing = cols[3].selectbox("Framing", list(FRAMINGS), index=list(FRAMINGS).index(DEFAULT_FRAMING),
                                format_func=lambda f: f"{f}: {FRAMINGS[f]}", key=f"{key}_framing")
    cols = st.columns(2)
    mean = cols[0].text_input("Mean per channel (0..1 pixel values)", "0.485, 0.456, 0.406", key=f"{key}_mean")
    std = cols[1].text_input("Std per channel", "0.229, 0.224, 0.225", key=f"{key}_std")
    card = {"classes": [c.strip() for c in classes.split(",") if c.strip()], "output": output,
            "input_size": [int(height), int(width)], "channels": int(channels), "mean": _numbers(mean),
            "std": _numbers(std), "framing": framing}
    if task != CUSTOM:
        card["task"] = task
    return card


def _uploaded_card(upload) -> dict:
    try:
        text = upload.getvalue().decode("utf-8")
        return tomllib.loads(text) if upload.name.lower().endswith(".toml") else json.loads(text)
    except (UnicodeDecodeError, ValueError) as exc:  # JSONDecodeError and TOMLDecodeError are ValueErrors
        raise InputError(f"the card file is not readable JSON or TOML ({exc})") from None


def import_model_form(ws: Workspace, actor, key: str = "import_model") -> str | None:
    """The form; returns the new run's id once a model is registered (None until then)."""
    st.caption("A model trained elsewhere becomes a run: Test sets runs it on any test set, and every evaluation "
               "page, the report and occlusion maps treat it as any run. ONNX models run with ONNX Runtime; "
               "TorchScript archives (torch.jit.save) with torch. A pickle (a torch.save file) is refused without "
               "being opened.")
    model = st.file_uploader("Model file (.onnx, or a TorchScript .pt)", type=MODEL_TYPES, key=f"{key}_file")
    source = st.radio("Model card", ["Fill it in here", "Upload a card (JSON or TOML)"], horizontal=True,
                      key=f"{key}_card_source")
    card_file = None
    if source == "Fill it in here":
        card = _card_fields(key)
    else:
        card_file = st.file_uploader("Model card", type=["json", "toml"], key=f"{key}_card")
        card = None
    name = st.text_input("Run name (optional)", key=f"{key}_name")
    if not st.button("Register the model", key=f"{key}_submit", icon=":material/upload_file:",
                     disabled=model is None or (card is None and card_file is None)):
        return None
    try:
        if card is None:
            card = _uploaded_card(card_file)
        with tempfile.TemporaryDirectory(prefix="import-model-") as folder:
            path = Path(folder) / f"upload{Path(model.name).suffix.lower()}"
            path.write_bytes(model.getvalue())
            imported = import_model(path, card, ws, name=name.strip() or None, original_name=model.name,
                                    actor=actor)
    except InputError as exc:
        show_error("The model was not registered:", exc)
        return None
    return imported.run_id
