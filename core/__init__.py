"""Training, inference, statistics and storage for the medical-imaging evaluation dashboard (no UI code)."""

__version__ = "0.1.0"
