"""Fine-tune mode: train the last stages (or all) with augmentation, warm-up schedule, AMP, accumulation, DDP."""

from __future__ import annotations

import contextlib
import math

import numpy as np
import torch
from torch.utils.data import DataLoader

from core.data.torch_data import ImageTableDataset
from core.metrics.model_operating_point import choose_operating_point
from core.metrics.selective import referral_card
from core.models import build_transform, create_model, preprocess_config, save_checkpoint, unfreeze_last_stages
from core.models.registry import feature_dim_of
from core.train.context import RunContext
from core.train.distributed import any_rank, barrier, broadcast_object, wrap_model
from core.train.features import auto_workers
from core.train.features_mode import store_feature_stats, store_training_prior
from core.train.recipe import EpochSampler, balanced_weights, build_loss, build_optimizer, build_scheduler, current_lr
from core.train.resume import load_best_weights, load_resume_state, save_resume_state
from core.train.scores import BestTracker, model_call_scores, score_predictions

_BN_TYPES = (torch.nn.modules.batchnorm._BatchNorm,)


def set_train_mode(model: torch.nn.Module, bn: str) -> None:
    """Train mode, except BatchNorm layers that are frozen (or all of them with bn='frozen') keep their
    running statistics: updating the statistics of a frozen stage would change it after all."""
    model.train()
    for module in model.modules():
        if isinstance(module, _BN_TYPES):
            if bn == "frozen" or not any(p.requires_grad for p in module.parameters(recurse=False)):
                module.eval()


def _loader(ctx: RunContext, rows: np.ndarray, transform, batch_size: int, sampler=None) -> DataLoader:
    workers = auto_workers(len(rows)) if ctx.cfg.num_workers is None else ctx.cfg.num_workers
    g = torch.Generator().manual_seed(ctx.cfg.seed + ctx.dist.rank)  # seeds workers' augmentation RNG
    return DataLoader(ImageTableDataset(ctx.data.dataset, transform, indices=rows), batch_size=batch_size,
                      sampler=sampler, shuffle=False, num_workers=workers, pin_memory=ctx.device.type == "cuda",
                      persistent_workers=workers > 0, generator=g, drop_last=False)


@torch.no_grad()
def evaluate(ctx: RunContext, model: torch.nn.Module, loader: DataLoader, loss_fn) -> tuple[dict, np.ndarray]:
    """Scores and probabilities over a loader, in eval mode (no augmentation, running BN statistics)."""
    was_training = model.training
    model.eval()
    probs, targets, loss_sum, n = [], [], 0.0, 0
    try:
        for x, y in loader:
            x = x.to(ctx.device, non_blocking=True)
            if ctx.channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            y = y.to(ctx.device)
            with torch.autocast(ctx.device.type, dtype=ctx.amp_dtype, enabled=ctx.amp_dtype is not None):
                logits = model(x)
            loss_sum += float(loss_fn(logits.float(), y).item()) * len(y)
            n += len(y)
            probs.append(ctx.probabilities(logits))
            targets.append(y.cpu().numpy())
    finally:
        model.train(was_training)
    if not n:
        return {}, np.zeros((0, ctx.num_classes))
    p, t = np.concatenate(probs), np.concatenate(targets)
    return score_predictions(ctx.kind, p, t, loss_sum / n), p


def _training_features(ctx: RunContext, model: torch.nn.Module, eval_tf, batch_size: int) -> torch.Tensor:
    """The final model's pooled features of the training images as stored (no augmentation): one pass."""
    from core.models.feature_stats import PooledFeatures
    from core.train.features import extract_features

    features = extract_features(PooledFeatures(model), ctx.data.dataset, ctx.data.train_rows, eval_tf, ctx.device,
                                batch_size=batch_size, num_workers=ctx.cfg.num_workers, amp_dtype=ctx.amp_dtype,
                                channels_last=ctx.channels_last)
    return features if features is not None else torch.zeros((0, feature_dim_of(model)))


def _stages_message(stages: list[str]) -> str:
    """What is being trained, in words (the stage names are kept in the event's `trainable_stages`)."""
    if not stages:
        return "Fine-tuning the new head only (the backbone stays frozen)"
    return f"Fine-tuning the new head and the backbone's last {len(stages)} stage{'s' if len(stages) > 1 else ''}"


def train_finetune_mode(ctx: RunContext, progress_factory) -> dict:
    cfg, data, dist = ctx.cfg, ctx.data, ctx.dist
    torch.manual_seed(cfg.seed)
    model = create_model(cfg.backbone, ctx.num_classes, pretrained=cfg.pretrained, head=cfg.head,
                         weights_file=cfg.weights_file, drop_rate=cfg.drop_rate)
    stages = unfreeze_last_stages(model, -1 if cfg.unfreeze == "all" else int(cfg.unfreeze))
    preprocessing = preprocess_config(cfg.backbone, cfg.image_size, framing=cfg.framing)
    model.to(ctx.device)
    if ctx.channels_last:
        model.to(memory_format=torch.channels_last)
    train_tf = build_transform(preprocessing, train=cfg.augmentation, augment=cfg.augment)
    eval_tf = build_transform(preprocessing, train=False)
    train_y = data.targets(data.train_rows)
    store_training_prior(ctx, train_y)
    weights = balanced_weights(train_y, ctx.num_classes, ctx.kind) if cfg.balance == "sampler" else None
    sampler = EpochSampler(len(data.train_rows), cfg.seed, dist, weights=weights)
    if cfg.batch_size % dist.world_size:
        ctx.log(f"batch size {cfg.batch_size} is not a multiple of {dist.world_size} processes; rounding down")
    per_rank = max(1, cfg.batch_size // dist.world_size)
    train_loader = _loader(ctx, data.train_rows, train_tf, per_rank, sampler)
    val_loader = _loader(ctx, data.val_rows, eval_tf, per_rank) if len(data.val_rows) else None
    loss_fn = build_loss(ctx.kind, train_y, ctx.num_classes, cfg.balance, ctx.device)

    optimizer = build_optimizer(model, cfg)
    steps_per_epoch = len(train_loader)
    updates_per_epoch = -(-steps_per_epoch // cfg.accumulate)
    scheduler = build_scheduler(optimizer, cfg, updates_per_epoch)
    scaler = torch.amp.GradScaler(ctx.device.type) if ctx.amp_dtype == torch.float16 else None
    tracker = BestTracker(cfg.val_metric, cfg.patience)
    start_epoch, num_updates = 1, 0
    if ctx.resume and ctx.run_dir is not None:
        state = load_resume_state(ctx.run_dir, model, optimizer, scheduler, scaler, tracker)
        if state is not None:
            start_epoch, num_updates = state["epoch"] + 1, state["num_updates"]
            ctx.log(f"resuming after epoch {state['epoch']} ({num_updates} updates)")
    ddp_model = wrap_model(model, dist, ctx.device)
    best_state = load_best_weights(ctx.run_dir) if ctx.resume and ctx.run_dir is not None else None
    progress = progress_factory(cfg.epochs * steps_per_epoch, (start_epoch - 1) * steps_per_epoch)
    ctx.events.write("status", status="running", message=_stages_message(stages),
                     trainable_stages=stages, start_epoch=start_epoch)
    cancelled, epoch = False, start_epoch - 1

    for epoch in range(start_epoch, cfg.epochs + 1):
        set_train_mode(ddp_model, cfg.bn)
        sampler.set_epoch(epoch)
        progress.start_epoch()
        total_loss = total_right = total_seen = n_images = 0.0
        optimizer.zero_grad(set_to_none=True)
        for step, (x, y) in enumerate(train_loader):
            x = x.to(ctx.device, non_blocking=True)
            if ctx.channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            y = y.to(ctx.device, non_blocking=True)
            last = step == steps_per_epoch - 1
            update = (step + 1) % cfg.accumulate == 0 or last
            # Between updates, skip DDP's gradient all-reduce: only the accumulated gradient is shared.
            sync = ddp_model.no_sync() if (dist.enabled and not update) else contextlib.nullcontext()
            with sync:
                with torch.autocast(ctx.device.type, dtype=ctx.amp_dtype, enabled=ctx.amp_dtype is not None):
                    logits = ddp_model(x)
                loss = loss_fn(logits.float(), y)
                scaled = loss / cfg.accumulate
                (scaler.scale(scaled) if scaler else scaled).backward()
            if update:
                if scaler:
                    scaler.step(optimizer)
                    scaler.update()
                else:
                    optimizer.step()
                optimizer.zero_grad(set_to_none=True)
                num_updates += 1
                scheduler.step_update(num_updates=num_updates)
            right, seen = ctx.batch_correct(logits, y)
            total_loss += loss.item() * len(y)
            total_right += right
            total_seen += seen
            n_images += len(y)
            progress.step(epoch, loss.item(), right, seen, len(y) * dist.world_size, current_lr(optimizer),
                          last=last)
            if any_rank(ctx.cancel_seen(), dist, ctx.device):
                cancelled = True
                break
        train_scores = {"loss": total_loss / max(1, n_images), "accuracy": total_right / max(1, total_seen)}
        progress.epoch(epoch, "train", train_scores, "loss", current_lr(optimizer),
                       images_per_s=progress.epoch_images_per_s())
        if cancelled:
            # Finish the step, save, stop: the epoch is incomplete, so resuming repeats it from its start.
            break
        stop = False
        if dist.is_main:
            improved = True
            if val_loader is not None:
                val_scores, _ = evaluate(ctx, model, val_loader, loss_fn)
                if epoch == 1 and not math.isfinite(val_scores.get(tracker.metric, math.nan)):
                    tracker.metric = "loss"
                improved = tracker.update(val_scores[tracker.metric], epoch)
                progress.epoch(epoch, "val", val_scores, tracker.metric, best=improved)
            else:
                tracker.best_epoch = epoch
            if improved:
                best_state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
                if ctx.run_dir is not None:
                    # Saved as soon as it is the best, so a run that dies later still leaves its best model.
                    save_checkpoint(model, ctx.run_dir / "checkpoint", ctx.card(preprocessing, {
                        "best_epoch": epoch, "metric": tracker.metric, "best_metric": tracker.best,
                        "in_progress": True}))
            stop = tracker.should_stop
            if ctx.run_dir is not None:
                save_resume_state(ctx.run_dir, model, optimizer, scheduler, scaler, tracker, epoch, num_updates)
        stop = broadcast_object(stop, dist)
        if stop:
            break
    barrier(dist)
    if not dist.is_main:
        return {"epochs_run": epoch, "worker": True}
    if best_state is not None:
        model.load_state_dict(best_state)
    val_scores, val_probs = evaluate(ctx, model, val_loader, loss_fn) if val_loader is not None else ({}, None)
    operating = None
    if val_probs is not None and len(val_probs) and ctx.kind != "multilabel":
        operating = choose_operating_point(data.task, data.targets(data.val_rows), val_probs, cfg.operating_rule,
                                           cfg.target_sensitivity, source="the validation split's predictions")
    ctx.extra_card["operating_point"] = operating.to_dict() if operating else None
    ctx.extra_card.update(referral_card(data.task, data.targets(data.val_rows), val_probs, operating))
    store_feature_stats(ctx, _training_features(ctx, model, eval_tf, per_rank))
    test_scores = {}
    if len(data.test_rows) and cfg.evaluate_test:
        test_scores, test_probs = evaluate(ctx, model, _loader(ctx, data.test_rows, eval_tf, per_rank), loss_fn)
        test_scores = model_call_scores(data.task, ctx.kind, test_probs, data.targets(data.test_rows), test_scores,
                                        operating)  # the accuracy `predict` gives on the same images
    summary = {"best_epoch": tracker.best_epoch, "epochs_run": epoch, "metric": tracker.metric,
               "best_metric": tracker.best, "val": val_scores, "test": test_scores, "cancelled": cancelled,
               "stopped_early": tracker.should_stop, "trainable_stages": stages,
               "operating_point": operating.to_dict() if operating else None}
    if ctx.run_dir is not None:
        model.cpu().to(memory_format=torch.contiguous_format)
        save_checkpoint(model, ctx.run_dir / "checkpoint", ctx.card(preprocessing, summary))
    return summary
