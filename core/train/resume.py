"""Resumable fine-tune state in run_dir/resume/: weights as safetensors, optimiser/scheduler as plain tensors
(torch.load with weights_only=True, so nothing is unpickled)."""

from __future__ import annotations

from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from core.models.weights import unreadable_weights
from core.store.files import write_atomically

RESUME_DIR = "resume"


def save_resume_state(run_dir: Path, model: torch.nn.Module, optimizer, scheduler, scaler, tracker,
                      epoch: int, num_updates: int) -> None:
    """Everything needed to continue after `epoch` (written at each epoch's end)."""
    folder = Path(run_dir) / RESUME_DIR
    folder.mkdir(exist_ok=True)
    weights = {k: v.detach().cpu().contiguous().clone() for k, v in model.state_dict().items()}
    state = {
        "epoch": int(epoch),
        "num_updates": int(num_updates),
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict() if scheduler is not None else None,
        "scaler": scaler.state_dict() if scaler is not None else None,
        "tracker": tracker.state_dict(),
        "rng_cpu": torch.get_rng_state(),
        "rng_cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }
    # Weights first: a state file never points at weights from another epoch that are not yet written.
    write_atomically(folder / "model.safetensors", lambda tmp: save_file(weights, tmp))
    write_atomically(folder / "state.pt", lambda tmp: torch.save(state, tmp))


def load_resume_state(run_dir: Path, model: torch.nn.Module, optimizer, scheduler, scaler, tracker) -> dict | None:
    """Restore the last epoch-end state into the given objects; None when there is none (start afresh)."""
    folder = Path(run_dir) / RESUME_DIR
    if not (folder / "state.pt").exists() or not (folder / "model.safetensors").exists():
        return None
    device = next(model.parameters()).device
    try:
        weights = load_file(str(folder / "model.safetensors"), device=str(device))
    except Exception as exc:  # safetensors and OS errors have no common base class
        raise unreadable_weights(folder / "model.safetensors", exc, "resume weights") from None
    try:
        state = torch.load(folder / "state.pt", map_location="cpu", weights_only=True)
    except Exception as exc:  # pickle, zip and OS errors have no common base class
        raise unreadable_weights(folder / "state.pt", exc, "resume state") from None
    model.load_state_dict(weights)
    optimizer.load_state_dict(state["optimizer"])
    if scheduler is not None and state["scheduler"] is not None:
        scheduler.load_state_dict(state["scheduler"])
    if scaler is not None and state["scaler"] is not None:
        scaler.load_state_dict(state["scaler"])
    tracker.load_state_dict(state["tracker"])
    torch.set_rng_state(state["rng_cpu"])
    if state["rng_cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["rng_cuda"])
    return state


def load_best_weights(run_dir: Path) -> dict | None:
    """The best checkpoint's state dict so far (resume keeps selecting against it)."""
    path = Path(run_dir) / "checkpoint" / "model.safetensors"
    return load_file(str(path)) if path.exists() else None
