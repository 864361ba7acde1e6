"""Features mode (Kermany et al.'s method): frozen backbone, cached bottleneck features, a new head trained on them."""

from __future__ import annotations

import contextlib
import copy
import math
import time

import numpy as np
import torch

from core.models import attach_head, build_transform, create_head, create_model, preprocess_config, save_checkpoint
from core.train.context import RunContext
from core.train.features import FeatureCache, cached_features, feature_cache_key, file_digest
from core.train.recipe import EpochSampler, balanced_weights, build_loss, build_optimizer, current_lr
from core.train.scores import BestTracker, score_predictions

EVAL_BATCH = 4096


def _features_for_run(ctx: RunContext, extractor, preprocessing: dict):
    """Train/val/test features from the cache (computing what is missing), with extraction progress events."""
    cfg, data = ctx.cfg, ctx.data
    precision = str(ctx.amp_dtype or torch.float32).replace("torch.", "")
    key = feature_cache_key(data.source_fingerprint, cfg.backbone, extractor.weights_source, preprocessing,
                            file_digest(cfg.weights_file) if cfg.weights_file else None, precision)
    info = {"fingerprint": data.source_fingerprint, "backbone": cfg.backbone, "precision": precision,
            "weights_source": extractor.weights_source, "preprocessing": preprocessing}
    rows = np.concatenate([data.train_rows, data.val_rows, data.test_rows])

    started = time.perf_counter()

    def progress(done, total):
        if done == total or done % max(1, cfg.batch_size * 4) < cfg.batch_size:
            elapsed = time.perf_counter() - started
            rate = done / elapsed if elapsed > 0 else None
            ctx.events.write("extract", done=done, total=total, images_per_s=rate, elapsed_s=elapsed,
                             eta_s=(total - done) / rate if rate else None)

    features, stats = cached_features(
        FeatureCache(ctx.workspace.cache_dir / "features"), key, info, extractor, data.dataset, rows,
        build_transform(preprocessing, train=False), ctx.device, ctx.dist, batch_size=max(cfg.batch_size, 32),
        num_workers=cfg.num_workers, amp_dtype=ctx.amp_dtype, channels_last=ctx.channels_last,
        progress=progress, should_stop=ctx.cancel_seen)
    if features is None:
        return None, stats
    ctx.events.write("extract", done=len(rows), total=len(rows), cache_key=key, **stats)
    ctx.log(f"features: {stats['cached']} from cache, {stats['computed']} computed "
            f"in {stats['seconds']:.1f} s (cache key {key[:12]})")
    n_train, n_val = len(data.train_rows), len(data.val_rows)
    return (features[:n_train], features[n_train:n_train + n_val], features[n_train + n_val:]), {**stats,
                                                                                                "key": key}


@torch.no_grad()
def _evaluate(ctx: RunContext, head, features: torch.Tensor, targets: np.ndarray, loss_fn) -> tuple[dict, np.ndarray]:
    head.eval()
    logits = torch.cat([head(features[i:i + EVAL_BATCH].to(ctx.device)) for i in range(0, len(features), EVAL_BATCH)]) \
        if len(features) else torch.zeros((0, ctx.num_classes), device=ctx.device)
    target_t = torch.as_tensor(targets, device=ctx.device)
    loss = float(loss_fn(logits, target_t).item()) if len(features) else math.nan
    probs = ctx.probabilities(logits)
    return score_predictions(ctx.kind, probs, targets, loss), probs


@contextlib.contextmanager
def _single_thread(device: torch.device):
    """A head step is a few small matrix products: on the CPU, waking a thread pool for each costs more than the
    work (and far more on a busy machine), so the head trains on one thread."""
    if device.type != "cpu":
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def train_features_mode(ctx: RunContext, progress_factory) -> dict:
    """Train the head on cached features; save backbone + best head as the checkpoint. Returns a summary."""
    cfg = ctx.cfg
    extractor = create_model(cfg.backbone, 0, pretrained=cfg.pretrained, weights_file=cfg.weights_file)
    extractor.to(ctx.device)
    if ctx.channels_last:
        extractor.to(memory_format=torch.channels_last)
    preprocessing = preprocess_config(cfg.backbone, cfg.image_size)
    parts, cache_stats = _features_for_run(ctx, extractor, preprocessing)
    if parts is None:
        return {"cancelled": True, "epochs_run": 0}
    if not ctx.dist.is_main:
        return {"epochs_run": 0, "worker": True}  # the head is trained once, on rank 0; features were shared
    with _single_thread(ctx.device):
        head, summary = fit_head(ctx, extractor.num_features, parts, progress_factory)
    summary["feature_cache"] = cache_stats
    if ctx.run_dir is not None:
        model = attach_head(extractor.cpu().to(memory_format=torch.contiguous_format), head.cpu())
        save_checkpoint(model, ctx.run_dir / "checkpoint", ctx.card(preprocessing, summary))
    return summary


def fit_head(ctx: RunContext, feature_dim: int, parts, progress_factory) -> tuple[torch.nn.Module, dict]:
    """Adam on the cached (train, val, test) features, best epoch by the validation score, early stopping."""
    cfg, data = ctx.cfg, ctx.data
    train_x, val_x, test_x = parts
    train_y, val_y, test_y = (data.targets(r) for r in (data.train_rows, data.val_rows, data.test_rows))
    torch.manual_seed(cfg.seed)
    head = create_head(feature_dim, ctx.num_classes, cfg.head, drop_rate=cfg.drop_rate).to(ctx.device)
    optimizer = build_optimizer(head, cfg)
    loss_fn = build_loss(ctx.kind, train_y, ctx.num_classes, cfg.balance, ctx.device)
    weights = balanced_weights(train_y, ctx.num_classes, ctx.kind) if cfg.balance == "sampler" else None
    sampler = EpochSampler(len(train_x), cfg.seed, weights=weights)
    steps_per_epoch = -(-len(train_x) // cfg.batch_size)
    progress = progress_factory(cfg.epochs * steps_per_epoch)
    tracker = BestTracker(cfg.val_metric, cfg.patience)
    train_x_dev, train_y_dev = train_x.to(ctx.device), torch.as_tensor(train_y, device=ctx.device)
    best_state, val_scores, cancelled, epoch = copy.deepcopy(head.state_dict()), {}, False, 0

    for epoch in range(1, cfg.epochs + 1):
        head.train()
        sampler.set_epoch(epoch)
        order = sampler.order().to(ctx.device)
        progress.start_epoch()
        total_loss = total_right = total_seen = 0.0
        for s in range(steps_per_epoch):
            idx = order[s * cfg.batch_size:(s + 1) * cfg.batch_size]
            x, y = train_x_dev[idx], train_y_dev[idx]
            logits = head(x)
            loss = loss_fn(logits, y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            right, seen = ctx.batch_correct(logits, y)
            total_loss += loss.item() * len(idx)
            total_right += right
            total_seen += seen
            progress.step(epoch, loss.item(), right, seen, len(idx), current_lr(optimizer),
                          last=s == steps_per_epoch - 1)
            if ctx.cancel_seen():
                cancelled = True
                break
        train_scores = {"loss": total_loss / max(1, len(train_x)), "accuracy": total_right / max(1, total_seen)}
        progress.epoch(epoch, "train", train_scores, "loss", current_lr(optimizer),
                       images_per_s=progress.epoch_images_per_s())
        if cancelled:
            break
        if len(val_x):
            val_scores, _ = _evaluate(ctx, head, val_x, val_y, loss_fn)
            if epoch == 1 and not math.isfinite(val_scores.get(tracker.metric, math.nan)):
                ctx.events.write("status", status="running", message=f"validation {tracker.metric} is undefined "
                                 "(one class only in validation); selecting on validation loss instead")
                tracker.metric = "loss"
            improved = tracker.update(val_scores[tracker.metric], epoch)
            progress.epoch(epoch, "val", val_scores, tracker.metric, best=improved)
            if improved:
                best_state = copy.deepcopy(head.state_dict())
            if tracker.should_stop:
                break
        else:
            best_state, tracker.best_epoch = copy.deepcopy(head.state_dict()), epoch

    head.load_state_dict(best_state)
    test_scores, _ = _evaluate(ctx, head, test_x, test_y, loss_fn) if len(test_x) and cfg.evaluate_test else ({}, None)
    best_val, _ = _evaluate(ctx, head, val_x, val_y, loss_fn) if len(val_x) else ({}, None)
    summary = {"best_epoch": tracker.best_epoch, "epochs_run": epoch, "metric": tracker.metric,
               "best_metric": tracker.best, "val": best_val, "test": test_scores, "cancelled": cancelled,
               "stopped_early": tracker.should_stop}
    return head, summary
