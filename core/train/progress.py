"""Step and epoch progress records (loss, accuracy, lr, images/s, elapsed, ETA) for events.jsonl."""

from __future__ import annotations

import time

from core.train.events import EventWriter


def measured_rate(first: tuple[float, int], last: tuple[float, int], total: int | None,
                  now: float | None = None) -> tuple[float | None, float | None]:
    """(items per second, seconds left) from two progress points (time, items done): the rate is what the batches
    between them measured, so start-up time before `first` never enters it, and the time left counts down from
    the last batch instead of growing while the next one is on its way. (None, None) before two points differ."""
    (t0, d0), (t1, d1) = first, last
    if d1 <= d0 or t1 <= t0:
        return None, None
    rate = (d1 - d0) / (t1 - t0)
    if not total:
        return rate, None
    left = (total - d1) / rate
    if now is not None:
        left = max(0.0, left - max(0.0, now - t1))
    return rate, left


class Progress:
    """Turns training steps into raw event records.

    Every step is recorded, except that steps faster than `min_interval_s` (a cached-features epoch runs
    thousands per second) are gathered into one record holding their mean loss and accuracy and their count.
    """

    def __init__(self, events: EventWriter, total_steps: int, done_steps: int = 0, min_interval_s: float = 0.2):
        self.events = events
        self.total_steps = max(1, int(total_steps))
        self.done_steps = int(done_steps)
        self.start_steps = int(done_steps)
        self.min_interval_s = min_interval_s
        self.start = time.perf_counter()
        self._reset_window()
        self.epoch_images = 0
        self.epoch_start = self.start

    def _reset_window(self) -> None:
        self._w_loss = self._w_correct = self._w_seen = 0.0
        self._w_images = self._w_steps = 0
        self._w_start = time.perf_counter()

    @property
    def elapsed_s(self) -> float:
        return time.perf_counter() - self.start

    def eta_s(self) -> float | None:
        steps_run = self.done_steps - self.start_steps
        if steps_run <= 0:
            return None
        return self.elapsed_s / steps_run * max(0, self.total_steps - self.done_steps)

    def start_epoch(self) -> None:
        self.epoch_images = 0
        self.epoch_start = time.perf_counter()

    def step(self, epoch: int, loss: float, correct: float, seen: float, images: int, lr: float,
             last: bool = False) -> None:
        """One optimisation step: `correct` of `seen` predictions right (accuracy), `images` in the batch."""
        self.done_steps += 1
        self.epoch_images += images
        self._w_loss += loss * images
        self._w_correct += correct
        self._w_seen += seen
        self._w_images += images
        self._w_steps += 1
        now = time.perf_counter()
        if now - self._w_start < self.min_interval_s and not last:
            return
        span = max(now - self._w_start, 1e-9)
        self.events.write("step", split="train", epoch=epoch, step=self.done_steps, total_steps=self.total_steps,
                          loss=self._w_loss / max(self._w_images, 1),
                          accuracy=self._w_correct / self._w_seen if self._w_seen else None,
                          lr=lr, images_per_s=self._w_images / span, steps_in_record=self._w_steps,
                          elapsed_s=self.elapsed_s, eta_s=self.eta_s())
        self._reset_window()

    def epoch_images_per_s(self) -> float:
        return self.epoch_images / max(time.perf_counter() - self.epoch_start, 1e-9)

    def epoch(self, epoch: int, split: str, scores: dict, metric: str, lr: float | None = None,
              **extra) -> dict:
        """An epoch summary for one split: all scores, plus which one selects the checkpoint and its value."""
        record = {k: v for k, v in scores.items()}
        return self.events.write("epoch", split=split, epoch=epoch, step=self.done_steps, metric=metric,
                                 metric_value=scores.get(metric), lr=lr, elapsed_s=self.elapsed_s,
                                 eta_s=self.eta_s(), **record, **extra)
