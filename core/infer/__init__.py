"""Batch inference: a trained model's probabilities for a dataset, as a cached predictions table (parquet)."""

from core.infer.predict import predict
from core.infer.predictions import predictions_frame, read_predictions, write_predictions

__all__ = ["predict", "predictions_frame", "read_predictions", "write_predictions"]
