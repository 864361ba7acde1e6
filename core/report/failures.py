"""Representative errors for the report and the presentation, chosen by a stated, reproducible rule (not by eye)."""

from __future__ import annotations

import pandas as pd

from core.data.tasks import Task
from core.infer.predictions import predicted_indices, probabilities
from core.metrics import class_indices, to_jsonable

FAILURE_RULE = ("the most confident error of each of the most frequent confusions (true class, called class), "
                "ties broken by image id")
N_FAILURES = 3


def failure_cases(frame: pd.DataFrame, task: Task, n: int = N_FAILURES) -> dict:
    """Up to n misclassified images: the confusions ranked by count (then by name), and in each the error the model
    was most sure of. Cycles through the confusions again when there are fewer than n of them."""
    if task.kind == "multilabel":
        return {"rule": FAILURE_RULE, "cases": [], "reason": "failure cases need one label per image"}
    truth = class_indices(frame["label"], task.classes)
    calls = predicted_indices(frame, task)
    probs = probabilities(frame, task)
    table = pd.DataFrame({"image_id": frame["image_id"].astype(str).to_numpy(), "true": truth, "called": calls})
    table["probability"] = probs[range(len(table)), calls] if len(table) else []
    wrong = table[table["true"] != table["called"]]
    if wrong.empty:
        return {"rule": FAILURE_RULE, "cases": [], "reason": "the model made no error on this test set",
                "n_errors": 0}
    ranked = (wrong.groupby(["true", "called"]).size().rename("count").reset_index()
              .sort_values(["count", "true", "called"], ascending=[False, True, True]))
    queues = [wrong[(wrong["true"] == r.true) & (wrong["called"] == r.called)]
              .sort_values(["probability", "image_id"], ascending=[False, True]) for r in ranked.itertuples()]
    chosen = []
    depth = 0
    while len(chosen) < min(n, len(wrong)):
        for queue, r in zip(queues, ranked.itertuples()):
            if depth < len(queue) and len(chosen) < n:
                row = queue.iloc[depth]
                chosen.append({"image_id": row["image_id"], "true": task.classes[int(row["true"])],
                               "predicted": task.classes[int(row["called"])],
                               "probability": float(row["probability"]), "confusion_count": int(r.count)})
        depth += 1
    return to_jsonable({"rule": FAILURE_RULE, "cases": chosen, "n_errors": int(len(wrong)), "reason": ""})
