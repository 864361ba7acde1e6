"""Batch inference: a trained model's probabilities for a dataset, as a cached predictions table (parquet)."""

from core.infer.predict import predict, predictions_frame, read_predictions

__all__ = ["predict", "predictions_frame", "read_predictions"]
