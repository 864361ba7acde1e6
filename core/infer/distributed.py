"""predict() under torchrun: each process scores its shard of the images, rank 0 writes the one predictions table.

`torchrun --nproc-per-node N -m core -- predict --run RUN --data DATA` starts N copies of the command. They join the
process group of core/train/distributed.py (gloo on the CPU, NCCL on GPUs: the one setup and teardown training uses)
and each calls predict() with the `share` hook of a `_Job`:

1. rank 0 announces a job id (broadcast), or that there is nothing to score (its table came from the cache or was
   derived from a source run's table) or that it failed first;
2. each rank scores its strided shard of the images (`shard_indices`: the assignment DistributedSampler makes
   without shuffling, less its padding) and writes it atomically to `<workspace>/predictions/.predict-shard-
   <job>-r<rank>.<pid>.tmp` (a name `core doctor` removes once its writer is gone), then every rank reports
   (all_gather) its shard or its error;
3. rank 0 merges the shards in the dataset's order and predict() writes and registers the table as in one process
   (core/infer/predictions.py owns it; the metadata records `world_size` and `images_per_rank`); rank 0 then
   broadcasts the outcome, so a failure on any rank fails every process with the same message. The other ranks
   write nothing but their shard, which each removes itself; nothing is half-written anywhere.

The workspace must be on a file system every node sees (as the run folder must be for training).
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd

from core.errors import InputError
from core.infer.predict import predict
from core.store import Workspace
from core.store.files import write_atomically
from core.train.distributed import (DistInfo, SharedJobError, all_gather_objects, barrier, broadcast_object, cleanup,
                                    init_distributed, new_job_id, rank_failure, shard_file, shard_indices)

SHARD_PREFIX = ".predict-shard-"


class SharedPredictError(SharedJobError):
    """A process of a torchrun `predict` failed; the message names its rank and why. No table was written.
    `echo` is False on the ranks other than 0, whose rank 0 prints the same message (the command prints it once)."""


def _save_shard(tmp: str, probs: np.ndarray, problems: list[str]) -> None:
    with open(tmp, "wb") as fh:
        np.savez(fh, probs=np.asarray(probs), problems=np.asarray(list(problems), dtype=str))


class _Job:
    """One torchrun predict. Every rank makes the same collective calls in the same order, whatever happens to it:
    announce (broadcast from 0) -> [engine ready (barrier) -> report (all_gather) -> outcome (broadcast from 0)]
    -> barrier."""

    def __init__(self, info: DistInfo, folder: Path):
        self.info = info
        self.folder = folder
        self.stage = "start"  # start -> stopped | scoring -> reported -> done
        self.job_id: str | None = None
        self.stop_error: str | None = None
        self.shard: Path | None = None

    # -- the collectives ------------------------------------------------------------------------------------
    def _announce(self, *, job: bool = False, error: str | None = None) -> None:
        message = ({"job": new_job_id()} if job else {"stop": error}) if self.info.is_main else None
        message = broadcast_object(message, self.info)
        self.job_id, self.stop_error = message.get("job"), message.get("stop")
        self.stage = "scoring" if self.job_id else "stopped"

    def _engine_ready(self) -> None:
        barrier(self.info)  # the first process of each machine chose the engine: the others now use the same one

    def _report(self, status: dict) -> list[dict]:
        statuses = all_gather_objects(status, self.info)
        self.stage = "reported"
        return statuses

    def _outcome(self, error: str | None = None) -> str | None:
        error = broadcast_object(error if self.info.is_main else None, self.info)
        self.stage = "done"
        return error

    # -- predict()'s hook -----------------------------------------------------------------------------------
    def share(self, aligned, score: Callable) -> tuple[np.ndarray, list[str], list[int]] | None:
        """Score this rank's shard of `aligned`; on rank 0, the merged (probs, problems, images_per_rank)."""
        self._announce(job=True)
        if self.stage == "stopped":  # only ranks other than 0: rank 0 has nothing to score, or failed
            return None
        n, rank = len(aligned), self.info.rank
        rows = np.asarray(shard_indices(n, self.info), dtype=np.int64)
        status: dict = {"n": n, "rows": len(rows)}
        try:
            if self.info.local_rank == 0:  # the engine is measured (and an ONNX export made) once per machine first
                score(aligned.subset([]))
        except Exception as exc:  # noqa: BLE001 - reported to every rank, which all fail with it
            status["error"] = rank_failure(exc, rank)
        self._engine_ready()
        if "error" not in status:
            try:
                status["shard"] = str(self._score_shard(aligned.subset(rows), score))
            except Exception as exc:  # noqa: BLE001 - reported to every rank, which all fail with it
                status["error"] = rank_failure(exc, rank)
        statuses = self._report(status)
        return self._merge(statuses, n) if self.info.is_main else None

    def _score_shard(self, part, score: Callable) -> Path:
        probs, problems = score(part)
        if len(probs) != len(part) or len(problems) != len(part):
            raise RuntimeError(f"scored {len(probs)} of its {len(part)} images")
        self.shard = shard_file(self.folder, SHARD_PREFIX, self.job_id, self.info.rank)
        write_atomically(self.shard, lambda tmp: _save_shard(tmp, probs, problems))
        return self.shard

    def _merge(self, statuses: list[dict], n: int) -> tuple[np.ndarray, list[str], list[int]]:
        errors = [s["error"] for s in statuses if "error" in s]
        if errors:
            raise SharedPredictError("; ".join(errors))
        seen = sorted({s["n"] for s in statuses})
        if seen != [n]:
            raise SharedPredictError(f"the processes read different image sets ({', '.join(map(str, seen))} "
                                     "images): was the data changed while they started? Run it again")
        probs: np.ndarray | None = None
        problems = [""] * n
        for rank, status in enumerate(statuses):
            rows = np.asarray(shard_indices(n, DistInfo(rank, self.info.world_size)), dtype=np.int64)
            try:
                with np.load(status["shard"], allow_pickle=False) as shard:
                    part, bad = shard["probs"], shard["problems"].tolist()
            except (OSError, ValueError, KeyError) as exc:
                raise SharedPredictError(f"rank {rank}'s shard {status['shard']} cannot be read on rank 0 ({exc}): "
                                         "is the workspace on a file system every node sees?") from None
            if len(part) != len(rows) or len(bad) != len(rows):
                raise SharedPredictError(f"rank {rank}'s shard holds {len(part)} rows, not {len(rows)}")
            if probs is None:
                probs = np.empty((n, part.shape[1]), dtype=part.dtype)
            probs[rows] = part
            for k, problem in zip(rows.tolist(), bad, strict=True):
                problems[k] = problem
        return probs, problems, [int(s["rows"]) for s in statuses]

    # -- how each rank ends ---------------------------------------------------------------------------------
    def finish(self, frame: pd.DataFrame | None) -> pd.DataFrame | None:
        """After predict() returned on this rank: rank 0's table, None elsewhere (SharedPredictError when another
        rank failed)."""
        if self.stage == "start":  # rank 0 served the table from its cache or derived it: nothing to score
            self._announce()
        error = self._outcome() if self.stage == "reported" else self.stop_error
        barrier(self.info)
        if error:
            raise SharedPredictError(error, echo=False)
        return frame if self.info.is_main else None

    def fail(self, exc: BaseException) -> str | None:
        """After predict() raised on this rank: make the collective calls this rank still owes, so that no rank
        waits for it, and return the message every rank fails with (None: rank 0 needed nothing from this rank,
        its table came from the cache)."""
        message: str | None = rank_failure(exc, self.info.rank)
        if self.stage == "start":
            self._announce(error=message)
            if self.stage == "scoring":  # ranks other than 0: rank 0 is scoring and waits for this rank's report
                self._engine_ready()
                self._report({"n": -1, "rows": 0, "error": message})
            elif not self.info.is_main:
                message = self.stop_error  # rank 0 failed first (its reason is the command's), or had no work
        if self.stage == "reported":
            message = self._outcome(message) or message
        barrier(self.info)
        return message

    def remove_shard(self) -> None:
        if self.shard is not None:
            self.shard.unlink(missing_ok=True)


def _rank_device(device: str, info: DistInfo) -> str:
    """Each process on its own GPU under NCCL ("auto" and "cuda" mean this rank's); an explicit device is kept."""
    return f"cuda:{info.local_rank}" if info.backend == "nccl" and device in ("auto", "cuda") else device


def predict_shared(run_or_checkpoint, dataset, workspace: Workspace | str | Path | None = None,
                   progress: Callable[[int, int], None] | None = None, *, device: str = "auto",
                   use_cache: bool = True, **kwargs) -> pd.DataFrame | None:
    """predict() in every process torchrun started (a plain predict() outside torchrun): the table on rank 0, None
    on the other ranks. Only rank 0 reads the cache; the others score their shard only when rank 0 needs the model
    run. Raises SharedPredictError (an InputError) on every rank when any rank fails."""
    info = init_distributed(device)
    try:
        if not info.enabled:
            return predict(run_or_checkpoint, dataset, workspace, progress, device=device, use_cache=use_cache,
                           **kwargs)
        ws = workspace if isinstance(workspace, Workspace) else Workspace.open(workspace)
        job = _Job(info, ws.predictions_dir)
        try:
            try:
                frame = predict(run_or_checkpoint, dataset, ws, progress if info.is_main else None,
                                device=_rank_device(device, info), use_cache=use_cache and info.is_main,
                                share=job.share, **kwargs)
            except Exception as exc:  # noqa: BLE001 - every rank fails together, with the first reason
                message = job.fail(exc)
                if message is None:
                    return None
                if info.is_main and isinstance(exc, InputError) and not isinstance(exc, SharedPredictError):
                    raise  # rank 0's own bad input: its message as a single process would give it
                raise SharedPredictError(message, echo=info.is_main) from exc
            return job.finish(frame)
        finally:
            job.remove_shard()
    finally:
        cleanup(info)
