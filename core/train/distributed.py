"""torchrun / DistributedDataParallel plumbing: one code path for 1 process, N CPU processes (gloo) or N GPUs (NCCL).

Sharded jobs (feature extraction here, `predict` in core/infer/distributed.py) share their failure rule and their
shard files from here: each rank writes its shard atomically to `shard_file(...)` (a dot-name carrying the writer's
pid, which `core doctor` removes once that process is gone), reports to rank 0, which merges; a failure on any rank
becomes one `SharedJobError` raised on every rank."""

from __future__ import annotations

import os
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, TypeVar

import torch
import torch.distributed as dist

from core.errors import InputError

T = TypeVar("T")


@dataclass(frozen=True)
class DistInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    backend: str | None = None

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


SINGLE = DistInfo()


def launched_by_torchrun() -> bool:
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def init_distributed(device: str = "auto") -> DistInfo:
    """Join the process group torchrun set up (env://); a plain `python -m core train` is a world of one."""
    if not launched_by_torchrun():
        return SINGLE
    if dist.is_initialized():
        return current()
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    use_cuda = device != "cpu" and torch.cuda.is_available()
    backend = "nccl" if use_cuda else "gloo"
    if use_cuda:
        torch.cuda.set_device(local_rank)
    dist.init_process_group(backend=backend)
    return DistInfo(dist.get_rank(), dist.get_world_size(), local_rank, backend)


def current() -> DistInfo:
    if not (dist.is_available() and dist.is_initialized()):
        return SINGLE
    return DistInfo(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0")),
                    dist.get_backend())


def cleanup(info: DistInfo) -> None:
    if info.enabled and dist.is_initialized():
        dist.destroy_process_group()


def broadcast_object(obj: Any, info: DistInfo, src: int = 0) -> Any:
    """Rank `src`'s value of a small picklable object, on every rank."""
    if not info.enabled:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=src)
    return box[0]


def any_rank(flag: bool, info: DistInfo, device: torch.device) -> bool:
    """True on every rank when any rank says True (a cancel seen by rank 0 stops all of them together)."""
    if not info.enabled:
        return flag
    device = device if info.backend == "nccl" else torch.device("cpu")
    t = torch.tensor([1.0 if flag else 0.0], device=device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item() > 0)


def barrier(info: DistInfo) -> None:
    if info.enabled:
        dist.barrier()


def all_gather_objects(obj: Any, info: DistInfo) -> list[Any]:
    """Every rank's object, in rank order (small records: a sharded job's status, never its data)."""
    if not info.enabled:
        return [obj]
    out: list[Any] = [None] * info.world_size
    dist.all_gather_object(out, obj)
    return out


def wrap_model(model: torch.nn.Module, info: DistInfo, device: torch.device) -> torch.nn.Module:
    """DDP-wrap for multi-process runs. On GPUs BatchNorm becomes SyncBatchNorm (per-GPU batches are small);
    PyTorch's SyncBatchNorm has no CPU kernel, so gloo runs keep per-process statistics (or use bn='frozen')."""
    if not info.enabled:
        return model
    if device.type == "cuda":
        model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)
        return torch.nn.parallel.DistributedDataParallel(model, device_ids=[device.index])
    return torch.nn.parallel.DistributedDataParallel(model)


def unwrap(model: torch.nn.Module) -> torch.nn.Module:
    return model.module if isinstance(model, torch.nn.parallel.DistributedDataParallel) else model


def shard_indices(n: int, info: DistInfo) -> range:
    """This rank's share of 0..n-1 (strided, so shards differ in size by at most one)."""
    return range(info.rank, n, info.world_size)


class SharedJobError(InputError):
    """A process of a torchrun job failed; the message names its rank and why and is the same on every rank, and
    nothing was merged. `echo` is False on the ranks other than 0, whose rank 0 prints the same message (the
    command prints it once)."""

    def __init__(self, message: str, echo: bool = True):
        super().__init__(message)
        self.echo = echo


def rank_failure(exc: BaseException, rank: int) -> str:
    """The one line every rank fails with when `exc` stopped rank `rank` (bad input as it was said, else its type)."""
    if isinstance(exc, SharedJobError):
        return str(exc)
    text = str(exc) if isinstance(exc, InputError) else f"{type(exc).__name__}: {exc}"
    return f"rank {rank}: {text}"


def new_job_id() -> str:
    return uuid.uuid4().hex[:12]


def shard_file(folder: str | Path, prefix: str, job_id: str, rank: int) -> Path:
    """Where `rank` writes its shard of job `job_id` (write it with core.store.files.write_atomically)."""
    return Path(folder) / f"{prefix}{job_id}-r{rank}.{os.getpid()}.tmp"


def local_first(make: Callable[[], T], info: DistInfo) -> T:
    """make() on each machine's first process, then on its others, which find what the first one cached (an ONNX
    export and its timing: one export per machine, not one race per process). A failure on any rank raises one
    SharedJobError on every rank."""
    if not info.enabled:
        return make()
    result: Any = None
    for first in (True, False):
        error = None
        if (info.local_rank == 0) == first:
            try:
                result = make()
            except Exception as exc:  # noqa: BLE001 - reported to every rank, which all fail with it
                error = rank_failure(exc, info.rank)
        errors = [e for e in all_gather_objects(error, info) if e]
        if errors:
            raise SharedJobError("; ".join(errors), echo=info.is_main)
    return result
