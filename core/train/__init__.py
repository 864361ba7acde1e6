"""Training: cached-features and fine-tune modes, runs as separate processes, progress events, torchrun/DDP."""

from core.train.config import RunConfig
from core.train.events import read_events
from core.train.launcher import cancel_run, launch_run, reconcile_runs, resume_run
from core.train.status import read_status

__all__ = ["RunConfig", "cancel_run", "launch_run", "read_events", "read_status", "reconcile_runs", "resume_run",
           "run_training"]


def __getattr__(name: str):
    # run_training pulls in torch and timm; the launcher and the dashboard's run list do not need them.
    if name == "run_training":
        from core.train.trainer import run_training

        return run_training
    raise AttributeError(f"module 'core.train' has no attribute {name!r}")
