"""Features mode (Kermany et al.'s method): frozen backbone, cached bottleneck features, a new head trained on them."""

from __future__ import annotations

import contextlib
import copy
import math
import time

import numpy as np
import torch

from core.models import attach_head, create_head, create_model, preprocess_config, save_checkpoint
from core.models.registry import feature_dim_of
from core.train.context import RunContext
from core.data.splits import patient_groups
from core.metrics.model_operating_point import choose_operating_point
from core.metrics.selective import referral_card
from core.metrics.prior_shift import training_prior_record
from core.train.distributed import local_first
from core.train.features import FeatureCache, cached_view_features, file_digest
from core.train.probe import fit_logistic_probe
from core.models.precision import frozen_forward
from core.train.recipe import EpochSampler, balanced_weights, build_loss, build_optimizer, current_lr
from core.train.progress import measured_rate
from core.train.scores import BestTracker, model_call_scores, score_predictions

EVAL_BATCH = 4096


def store_training_prior(ctx: RunContext, targets: np.ndarray) -> None:
    """Put in the card the class prior the head's probabilities are calibrated to (the balanced one when classes
    are balanced), from the rows the head is fitted on: label-shift adaptation (core.infer.recalibrate) needs it."""
    if ctx.kind != "multilabel" and len(targets):
        counts = np.bincount(np.asarray(targets, dtype=np.int64), minlength=ctx.num_classes)
        ctx.extra_card["training_prior"] = training_prior_record(ctx.data.task.classes, counts, ctx.cfg.balance)


def store_feature_stats(ctx: RunContext, features) -> None:
    """Put in the card each pooled feature's mean and spread over the images the head is fitted on (as stored, no
    acquisition views), kept beside the checkpoint: label-free feature standardisation maps a site onto them."""
    from core.models.feature_stats import CARD_KEY, FeatureStats

    if len(features):
        ctx.extra_card[CARD_KEY] = FeatureStats.of(features, f"pooled backbone features of the {len(features)} "
                                                   "training images the head is fitted on (as stored, no "
                                                   "acquisition views)")


def _features_for_run(ctx: RunContext, extractor, preprocessing: dict, forward):
    """Features of the train/val/test images (view 0) and of the training images' acquisition views, from the
    cache (computing what is missing), with extraction progress events. `forward` is the measured engine
    (core.models.precision.frozen_forward)."""
    cfg, data = ctx.cfg, ctx.data
    precision = forward.precision
    rows = np.concatenate([data.train_rows, data.val_rows, data.test_rows])
    fit_rows = training_rows(ctx)
    last_written = [0.0]

    def progress(done, total):
        # Every batch, at most twice a second: the bar moves with the backbone, not in jumps; the rate and time left
        # are measured from these records' times (core.train.monitor).
        now = time.perf_counter()
        if done == total or now - last_written[0] >= 0.5:
            last_written[0] = now
            ctx.events.write("extract", done=done, total=total)

    views, stats = cached_view_features(
        FeatureCache(ctx.workspace.cache_dir / "features"), data.dataset, [rows] + [fit_rows] * cfg.views,
        extractor, preprocessing, fingerprint=data.source_fingerprint, backbone=cfg.backbone,
        weights_source=extractor.weights_source,
        weights_digest=file_digest(cfg.weights_file) if cfg.weights_file else None, precision=precision,
        device=ctx.device, dist=ctx.dist, seed=cfg.seed, batch_size=max(cfg.batch_size, 32),
        num_workers=cfg.num_workers, forward=forward, progress=progress, should_stop=ctx.cancel_seen)
    if views is None:
        return None, stats
    total = len(rows) + len(fit_rows) * cfg.views
    ctx.events.write("extract", done=total, total=total, cache_key=stats["keys"][0], **stats)
    ctx.log(f"features: {stats['cached']} from cache, {stats['computed']} computed in {stats['seconds']:.1f} s "
            f"({forward.engine} {precision}, {cfg.views} acquisition view(s) per training image; cache key {stats['keys'][0][:12]})"
            + (f"; extracted by {ctx.dist.world_size} processes: {', '.join(map(str, stats['images_per_rank']))} "
               "images" if stats.get("images_per_rank") else ""))
    n_train, n_val = len(data.train_rows), len(data.val_rows)
    first = views[0]
    parts = (first[:n_train], first[n_train:n_train + n_val], first[n_train + n_val:])
    return (parts, views[1:]), {**stats, "key": stats["keys"][0], "precision": precision}


def training_rows(ctx: RunContext) -> np.ndarray:
    """Rows the head is fitted on: the logistic probe uses every non-test image (its CV replaces the
    validation split); the Adam fit keeps the validation rows apart for early stopping."""
    data = ctx.data
    if ctx.cfg.head_fit == "logistic":
        return np.concatenate([data.train_rows, data.val_rows])
    return data.train_rows


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
    preprocessing = preprocess_config(cfg.backbone, cfg.image_size, framing=cfg.framing)
    ctx.events.write("status", status="running", message="choosing the inference engine (first use on this machine: "
                     "ONNX export and a timing of ONNX Runtime against torch)")
    # Under torchrun each machine's first process exports and times the engine; its others then read that choice.
    forward = local_first(lambda: frozen_forward(extractor, preprocessing["input_size"], ctx.device,
                                                 amp_mode=cfg.amp, cache_dir=ctx.workspace.cache_dir / "onnx",
                                                 framing=cfg.framing, log=ctx.log), ctx.dist)
    ctx.log(f"inference engine: {forward.engine} ({forward.reason})")
    ctx.events.write("status", status="running", message="feature extraction: checking the "
                     "cache and reading the first batch of images")
    features, cache_stats = _features_for_run(ctx, extractor, preprocessing, forward)
    if not ctx.dist.is_main:
        # Its share of the features is in the cache; rank 0 holds the matrices and fits the head once.
        return {"epochs_run": 0, "worker": True, "cancelled": features is None and not cache_stats.get("worker")}
    if features is None:
        return {"cancelled": True, "epochs_run": 0}
    parts, extra_views = features
    width = feature_dim_of(extractor)
    with _single_thread(ctx.device):
        if cfg.head_fit == "logistic":
            head, summary = fit_probe_head(ctx, width, parts, extra_views)
        else:
            head, summary = fit_head(ctx, width, parts, progress_factory, extra_views)
    summary["feature_cache"] = cache_stats
    ctx.extra_card["inference"] = forward.record()
    if ctx.run_dir is not None:
        model = attach_head(extractor.cpu().to(memory_format=torch.contiguous_format), head.cpu())
        save_checkpoint(model, ctx.run_dir / "checkpoint", ctx.card(preprocessing, summary))
    return summary


def fit_probe_head(ctx: RunContext, feature_dim: int, parts, extra_views) -> tuple[torch.nn.Module, dict]:
    """The logistic probe on every non-test image (and its acquisition views), C by patient-grouped CV; the
    operating point from the out-of-fold predictions."""
    cfg, data = ctx.cfg, ctx.data
    train_x, val_x, test_x = parts
    rows = training_rows(ctx)
    x_orig = torch.cat([train_x, val_x]).numpy()
    y_orig = data.targets(rows)
    views = [v.numpy() for v in extra_views]
    x = np.concatenate([x_orig] + views)
    y = np.concatenate([y_orig] * (1 + len(views)))
    groups = np.concatenate([patient_groups(data.dataset).to_numpy()[rows]] * (1 + len(views)))
    original = np.concatenate([np.ones(len(rows), bool)] + [np.zeros(len(rows), bool)] * len(views))
    started = time.perf_counter()
    ctx.events.write("status", status="running", message=f"fitting the logistic head on {len(rows)} images "
                     f"({len(x)} rows with acquisition views); strength chosen by patient-grouped CV")

    def fold_done(done: int, folds: int, losses: dict[float, float]) -> None:
        # The cross-validation curve as it fills in, fold by fold, with the rate the folds take.
        elapsed = time.perf_counter() - started
        _, left = measured_rate((0.0, 0), (elapsed, done), folds + 1)  # the folds, then the final fit on every image
        ctx.events.write("cv_fold", fold=done, folds=folds, elapsed_s=elapsed, eta_s=left,
                         log_loss=[{"C": c, "log_loss": v} for c, v in losses.items()])

    fit = fit_logistic_probe(x, y, groups, num_classes=ctx.num_classes, kind=ctx.kind, balance=cfg.balance,
                             seed=cfg.seed, original=original, on_fold=fold_done)
    for c, loss in fit.cv_log_loss.items():
        ctx.events.write("cv", C=c, log_loss=loss, chosen=c == fit.C)
    head = create_head(feature_dim, ctx.num_classes, "linear").to(ctx.device)
    head.load_state_dict(fit.head_state())
    loss_fn = build_loss(ctx.kind, y_orig, ctx.num_classes, "none", ctx.device)
    oof_ok = ~np.isnan(fit.oof_probabilities).any(axis=1)
    cv_scores = (score_predictions(ctx.kind, fit.oof_probabilities[oof_ok], y_orig[oof_ok],
                                   fit.cv_log_loss.get(fit.C)) if oof_ok.any() else {})
    operating = None
    if ctx.kind != "multilabel" and oof_ok.any():
        operating = choose_operating_point(data.task, y_orig[oof_ok], fit.oof_probabilities[oof_ok],
                                           cfg.operating_rule, cfg.target_sensitivity)
    ctx.extra_card["operating_point"] = operating.to_dict() if operating else None
    # Refer when unsure: the band around that point, calibrated on the same out-of-fold predictions.
    ctx.extra_card.update(referral_card(data.task, y_orig[oof_ok], fit.oof_probabilities[oof_ok], operating))
    store_training_prior(ctx, y_orig)
    store_feature_stats(ctx, x_orig)
    test_y = data.targets(data.test_rows)
    test_scores, test_probs = _evaluate(ctx, head, test_x, test_y, loss_fn) if len(test_x) and cfg.evaluate_test \
        else ({}, None)
    test_scores = model_call_scores(data.task, ctx.kind, test_probs, test_y, test_scores, operating)
    # The out-of-fold scores are the logistic head's validation: the live panel's "Validation accuracy" reads them.
    ctx.events.write("epoch", split="val", epoch=1, metric=cfg.val_metric, metric_value=cv_scores.get(cfg.val_metric),
                     best=True, validation="out-of-fold", **cv_scores)
    summary = {"best_epoch": 1, "epochs_run": 1, "metric": cfg.val_metric,
               "best_metric": cv_scores.get(cfg.val_metric, math.nan), "val": cv_scores, "test": test_scores,
               "cancelled": False, "stopped_early": False, "head_fit": "logistic", "probe": fit.summary(),
               "validation": f"{fit.folds}-fold patient-grouped cross-validation on {len(rows)} training images",
               "operating_point": operating.to_dict() if operating else None,
               "fit_seconds": time.perf_counter() - started}
    return head, summary


def fit_head(ctx: RunContext, feature_dim: int, parts, progress_factory, extra_views=()) -> tuple[torch.nn.Module,
                                                                                                  dict]:
    """Adam on the cached (train, val, test) features (training rows plus their acquisition views), best epoch
    by the validation score, early stopping; the operating point from the best epoch's validation predictions."""
    cfg, data = ctx.cfg, ctx.data
    train_x, val_x, test_x = parts
    train_y, val_y, test_y = (data.targets(r) for r in (data.train_rows, data.val_rows, data.test_rows))
    store_training_prior(ctx, train_y)
    store_feature_stats(ctx, train_x)
    if len(extra_views):
        train_x = torch.cat([train_x, *extra_views])
        train_y = np.concatenate([train_y] * (1 + len(extra_views)))
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
    test_scores, test_probs = _evaluate(ctx, head, test_x, test_y, loss_fn) if len(test_x) and cfg.evaluate_test \
        else ({}, None)
    best_val, val_probs = _evaluate(ctx, head, val_x, val_y, loss_fn) if len(val_x) else ({}, None)
    operating = None
    if val_probs is not None and ctx.kind != "multilabel":
        operating = choose_operating_point(data.task, val_y, val_probs, cfg.operating_rule, cfg.target_sensitivity,
                                           source="the validation split's predictions")
    ctx.extra_card["operating_point"] = operating.to_dict() if operating else None
    ctx.extra_card.update(referral_card(data.task, val_y, val_probs, operating))  # the band, on the same predictions
    test_scores = model_call_scores(data.task, ctx.kind, test_probs, test_y, test_scores, operating)
    summary = {"best_epoch": tracker.best_epoch, "epochs_run": epoch, "metric": tracker.metric,
               "best_metric": tracker.best, "val": best_val, "test": test_scores, "cancelled": cancelled,
               "stopped_early": tracker.should_stop, "head_fit": "adam",
               "operating_point": operating.to_dict() if operating else None}
    return head, summary
