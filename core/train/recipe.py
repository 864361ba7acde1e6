"""The parts of a training recipe: device and precision, seeding, loss with class weights, samplers, optimiser."""

from __future__ import annotations

import os
import random

import numpy as np
import torch
from timm.optim import create_optimizer_v2
from timm.scheduler import create_scheduler_v2

from core.errors import InputError
from core.train.config import RunConfig
from core.train.distributed import SINGLE, DistInfo


def resolve_device(requested: str, dist: DistInfo = SINGLE) -> torch.device:
    """CUDA when available (this rank's GPU under torchrun), else the CPU; an explicit choice wins."""
    if requested == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda", dist.local_rank if dist.enabled else torch.cuda.current_device())
        return torch.device("cpu")
    device = torch.device(requested)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise InputError(f"device {requested!r} asked for, but no CUDA GPU is available here")
        if device.index is None:
            device = torch.device("cuda", dist.local_rank if dist.enabled else 0)
    return device


def amp_dtype(mode: str, device: torch.device) -> torch.dtype | None:
    """Autocast dtype for training: bf16 on GPUs that have it (no loss scaling needed), else fp16; off on the
    CPU by default (inference on the CPU has its own fast path: inference_precision)."""
    if mode == "off" or (mode == "auto" and device.type != "cuda"):
        return None
    if mode == "bf16" or (mode == "auto" and torch.cuda.is_bf16_supported()):
        return torch.bfloat16
    if device.type != "cuda":
        raise InputError("amp 'fp16' needs a CUDA GPU; use 'bf16' or 'off' on the CPU")
    return torch.float16


def set_threads() -> None:
    """Intra-op threads: $TORCH_NUM_THREADS when set (shared machines), else torch's own default."""
    threads = os.environ.get("TORCH_NUM_THREADS")
    if threads:
        torch.set_num_threads(max(1, int(threads)))


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)


def class_counts(targets: np.ndarray, num_classes: int, multilabel: bool) -> np.ndarray:
    if multilabel:
        return targets.sum(axis=0)
    return np.bincount(targets.astype(int), minlength=num_classes).astype(float)


def build_loss(kind: str, targets: np.ndarray, num_classes: int, balance: str,
               device: torch.device) -> torch.nn.Module:
    """Cross-entropy (single-label) or BCE-with-logits (multi-label); with balance='weights', classes are
    weighted inversely to their training frequency (sklearn's 'balanced'; pos_weight for multi-label)."""
    multilabel = kind == "multilabel"
    if balance != "weights":
        return torch.nn.BCEWithLogitsLoss() if multilabel else torch.nn.CrossEntropyLoss()
    counts = class_counts(targets, num_classes, multilabel)
    if multilabel:
        negatives = len(targets) - counts
        pos_weight = np.where(counts > 0, negatives / np.maximum(counts, 1), 1.0)
        return torch.nn.BCEWithLogitsLoss(pos_weight=torch.tensor(pos_weight, dtype=torch.float32, device=device))
    present = counts > 0
    weights = np.ones(num_classes)
    weights[present] = counts.sum() / (present.sum() * counts[present])
    return torch.nn.CrossEntropyLoss(weight=torch.tensor(weights, dtype=torch.float32, device=device))


class EpochSampler(torch.utils.data.Sampler):
    """Seeded per-epoch order of the training rows, shared by all ranks and split between them.

    balanced=True draws with replacement, each class equally likely (the balanced sampler). Every rank
    draws the same sequence (seed + epoch) and takes every world_size-th item, so N processes see exactly
    the batches one process would, split between them, and a resumed run sees the same order again."""

    def __init__(self, n: int, seed: int, dist: DistInfo = SINGLE, weights: np.ndarray | None = None):
        self.n = int(n)
        self.seed = int(seed)
        self.dist = dist
        self.weights = None if weights is None else torch.as_tensor(weights, dtype=torch.double)
        self.epoch = 0
        self.per_rank = -(-self.n // dist.world_size)  # ceil: pad so every rank gets as many

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def order(self) -> torch.Tensor:
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
        if self.weights is not None:
            full = torch.multinomial(self.weights, self.n, replacement=True, generator=g)
        else:
            full = torch.randperm(self.n, generator=g)
        pad = self.per_rank * self.dist.world_size - self.n
        if pad:
            full = torch.cat([full, full[:pad]])
        return full[self.dist.rank::self.dist.world_size]

    def __iter__(self):
        return iter(self.order().tolist())

    def __len__(self) -> int:
        return self.per_rank


def balanced_weights(targets: np.ndarray, num_classes: int, kind: str) -> np.ndarray:
    """Per-image sampling weight 1 / (its class's count): each class drawn equally often."""
    if kind == "multilabel":
        raise InputError("the balanced sampler needs single-label data; use balance='weights' for multi-label")
    counts = class_counts(targets, num_classes, False)
    return 1.0 / counts[targets.astype(int)]


def build_optimizer(params_or_model, cfg: RunConfig) -> torch.optim.Optimizer:
    """timm's optimiser factory (skips frozen parameters; no weight decay on biases and norms)."""
    return create_optimizer_v2(params_or_model, opt=cfg.optimizer, lr=cfg.lr, weight_decay=cfg.weight_decay)


def build_scheduler(optimizer: torch.optim.Optimizer, cfg: RunConfig, updates_per_epoch: int):
    """Per-update schedule with linear warm-up: cosine decay to 1% of lr, or constant after warm-up."""
    # warmup_prefix: the decay starts after the warm-up, from the full lr (else it would already be decaying).
    updates_per_epoch = max(1, updates_per_epoch)
    decay_epochs = max(cfg.epochs - cfg.warmup_epochs, 1 / updates_per_epoch)  # warm-up + decay = the run
    common = dict(num_epochs=decay_epochs, warmup_epochs=cfg.warmup_epochs, warmup_lr=cfg.lr * 0.01,
                  warmup_prefix=True, step_on_epochs=False, updates_per_epoch=updates_per_epoch)
    if cfg.schedule == "cosine":
        scheduler, _ = create_scheduler_v2(optimizer, sched="cosine", min_lr=cfg.lr * 0.01, **common)
    else:
        scheduler, _ = create_scheduler_v2(optimizer, sched="step", decay_epochs=10**9, decay_rate=1.0, **common)
    return scheduler


def current_lr(optimizer: torch.optim.Optimizer) -> float:
    return float(optimizer.param_groups[0]["lr"])
