"""What a training loop needs to know about its run: config, data, device, precision, events, cancel check."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from core.store import Workspace
from core.train.config import RunConfig
from core.train.distributed import SINGLE, DistInfo
from core.train.events import EventWriter
from core.train.plan import TrainingData
from core.train.status import cancel_requested


@dataclass
class RunContext:
    cfg: RunConfig
    run_dir: Path | None
    workspace: Workspace
    data: TrainingData
    device: torch.device
    amp_dtype: torch.dtype | None
    channels_last: bool
    events: EventWriter
    dist: DistInfo = SINGLE
    resume: bool = False
    log: Callable[[str], None] = print
    extra_card: dict = field(default_factory=dict)

    @property
    def kind(self) -> str:
        return self.data.task.kind

    @property
    def num_classes(self) -> int:
        return self.data.task.num_classes

    def cancel_seen(self) -> bool:
        """This process's view: the run's cancel flag (written by cancel_run or our SIGTERM handler)."""
        return self.dist.is_main and cancel_requested(self.run_dir)

    def probabilities(self, logits: torch.Tensor) -> np.ndarray:
        logits = logits.float()
        probs = torch.sigmoid(logits) if self.kind == "multilabel" else torch.softmax(logits, dim=1)
        return probs.cpu().numpy()

    def batch_correct(self, logits: torch.Tensor, targets: torch.Tensor) -> tuple[float, float]:
        """(right, total) predictions in a batch: per label for multi-label tasks, per image otherwise."""
        with torch.no_grad():
            if self.kind == "multilabel":
                right = ((logits > 0).float() == targets).sum().item()
                return float(right), float(targets.numel())
            return float((logits.argmax(1) == targets).sum().item()), float(len(targets))

    def card(self, preprocessing: dict, training: dict) -> dict:
        """The model card's content beyond what save_checkpoint fills in itself."""
        cfg = self.cfg
        return {
            "task": self.data.task.to_dict(),
            "classes": list(self.data.task.classes),
            "kind": self.kind,
            "source_task": (self.data.source_task or self.data.task).to_dict(),
            "binary": self.data.binary,
            "run_id": self.run_dir.name if self.run_dir else None,
            "preprocessing": preprocessing,
            "training": {"mode": cfg.mode, "backbone": cfg.backbone, "dataset_fingerprint": cfg.dataset_fingerprint,
                         "data": cfg.data, "seed": cfg.seed, "images": self.data.describe(), **training},
            **self.extra_card,
        }
