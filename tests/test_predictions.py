"""The predictions table's owner: columns, the model's call, its task, and the parquet file with its metadata."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from core.data.tasks import get_task
from core.errors import InputError
from core.infer.predictions import (check_predictions, predicted_classes, predicted_indices, read_predictions,
                                    task_of, with_predicted, write_predictions)

OCT = get_task("oct-kermany")  # classes CNV, DME, DRUSEN, NORMAL; default view: CNV + DME (urgent) vs the rest


def _table(probs, labels) -> pd.DataFrame:
    frame = pd.DataFrame({"image_id": [f"i{j}" for j in range(len(labels))], "label": labels,
                          "patient_id": [f"p{j}" for j in range(len(labels))]})
    for j, cls in enumerate(OCT.classes):
        frame[f"prob_{cls}"] = probs[:, j]
    return frame


PROBS = np.array([[0.1, 0.2, 0.3, 0.4],    # most probable NORMAL; urgent score 0.3
                  [0.5, 0.1, 0.2, 0.2],    # CNV; urgent 0.6
                  [0.05, 0.3, 0.45, 0.2]])  # DRUSEN; urgent 0.35


def test_the_call_is_the_most_probable_class_or_follows_a_threshold():
    assert predicted_classes(PROBS, OCT).tolist() == ["NORMAL", "CNV", "DRUSEN"]
    # A threshold on the urgent score decides the side first, then the most probable class of that side.
    assert predicted_classes(PROBS, OCT, threshold=0.32).tolist() == ["NORMAL", "CNV", "DME"]
    assert predicted_classes(np.zeros((0, 4)), OCT).tolist() == []
    fundus = get_task("fundus-multilabel")
    probs = np.zeros((2, fundus.num_classes))
    probs[0, [0, 2]] = 0.9
    expected = f"{fundus.classes[0]}|{fundus.classes[2]}"
    assert predicted_classes(probs, fundus).tolist() == [expected, ""]
    assert predicted_classes(probs, fundus, threshold=0.95).tolist() == ["", ""]


def test_a_table_without_predicted_gets_the_same_calls():
    frame = _table(PROBS, ["NORMAL", "CNV", "DME"])
    assert predicted_indices(frame, OCT).tolist() == [3, 0, 2]
    filled = with_predicted(frame, OCT)
    assert filled["predicted"].tolist() == ["NORMAL", "CNV", "DRUSEN"] and "predicted" not in frame
    stored = filled.assign(predicted=["CNV", "CNV", "CNV"])  # a stored column wins
    assert predicted_indices(stored, OCT).tolist() == [0, 0, 0] and with_predicted(stored, OCT) is stored


def test_missing_columns_are_named():
    with pytest.raises(InputError, match="prob_DME"):
        check_predictions(_table(PROBS, ["NORMAL"] * 3).drop(columns=["prob_DME"]), OCT)
    with pytest.raises(InputError, match="no rows"):
        check_predictions(_table(PROBS[:0], []), OCT)


def test_the_file_keeps_its_metadata_and_the_task(tmp_path):
    frame = with_predicted(_table(PROBS, ["NORMAL", "CNV", "DME"]), OCT)
    path = write_predictions(frame, tmp_path / "p.parquet", {"task": OCT.to_dict(), "run_id": "r1"})
    back, meta = read_predictions(path)
    pd.testing.assert_frame_equal(back, frame, check_dtype=False)
    assert meta["run_id"] == "r1" and task_of(meta) == OCT
    # Without a task in the metadata: the first name given, else the demo's task.
    assert task_of({}, None, "cxr-kermany").name == "cxr-kermany" and task_of({}).name == "oct-kermany"
    # Damaged metadata leaves the table readable; a file that is not parquet is named.
    table = pa.Table.from_pandas(frame, preserve_index=False).replace_schema_metadata({b"core": b"\xff{"})
    pq.write_table(table, tmp_path / "damaged.parquet")
    assert read_predictions(tmp_path / "damaged.parquet")[1] == {}
    with pytest.raises(InputError, match="absent.parquet: predictions file not found"):
        read_predictions(tmp_path / "absent.parquet")
