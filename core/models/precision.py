"""How to run a frozen model fast on this device: autocast dtype and memory format for extraction and inference."""

from __future__ import annotations

import os

import torch


def cpu_has_native_bf16() -> bool:
    """True when this CPU computes bf16 natively (AVX512-BF16 or AMX): bf16 autocast then runs a frozen backbone
    about 3x faster than fp32, with pooled features within about 2% (relative L2) of fp32. Emulated bf16 on other
    CPUs is slower than fp32. $CORE_CPU_BF16=0 turns it off."""
    if os.environ.get("CORE_CPU_BF16", "").strip().lower() in {"0", "false", "no", "off"}:
        return False
    try:
        with open("/proc/cpuinfo") as fh:
            flags = next((line.split(":", 1)[1].split() for line in fh if line.startswith("flags")), [])
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def cpu_amp_dtype() -> torch.dtype | None:
    """Autocast dtype for inference on this CPU (extraction, predict, occlusion): bf16 where native, else None."""
    return torch.bfloat16 if cpu_has_native_bf16() else None


def inference_precision(device: torch.device, mode: str = "auto") -> tuple[torch.dtype | None, bool]:
    """(autocast dtype, channels-last) for running a frozen model: the fast path on this device.

    GPU: bf16 (or fp16) autocast, channels-last. CPU: channels-last always (1.5-1.8x faster for EfficientNets in
    fp32), bf16 autocast where the CPU has it natively. The dtype is recorded in feature-cache keys and model cards.
    """
    if device.type == "cpu":
        if mode == "off":
            return None, True
        return (cpu_amp_dtype() if mode == "auto" else torch.bfloat16), True
    if mode == "off":
        return None, True
    if mode == "fp16" or (mode == "auto" and not torch.cuda.is_bf16_supported()):
        return torch.float16, True
    return torch.bfloat16, True


# -- the engine: torch (autocast, channels-last) or ONNX Runtime, whichever this machine runs faster ----------------

ENGINES = ("auto", "onnx", "torch")
ENGINE_ENV = "CORE_ENGINE"
ONNX_TOLERANCE = 1e-3  # relative L2 of ONNX features against torch float32; the probe's AUC does not move under it
_TIMING_BATCH = 8


ENGINE_HELP = ("how frozen models run on the CPU: auto (default: ONNX Runtime or torch, whichever this machine ran "
               "faster at first use), onnx, torch; also $CORE_ENGINE")


def add_engine_flag(parser) -> None:
    """The --engine flag of the commands that run frozen models (train, predict, explain)."""
    parser.add_argument("--engine", choices=ENGINES, help=ENGINE_HELP)


def use_engine_flag(engine: str | None) -> None:
    """A given --engine holds for this process and those it starts (DataLoader workers, the launcher's run)."""
    if engine:
        os.environ[ENGINE_ENV] = requested_engine(engine)


def requested_engine(engine: str | None = None) -> str:
    """The engine asked for: `engine` (a --engine flag), else $CORE_ENGINE, else auto."""
    value = (engine or os.environ.get(ENGINE_ENV) or "auto").strip().lower()
    if value not in ENGINES:
        from core.errors import InputError

        raise InputError(f"engine must be one of {', '.join(ENGINES)}, got {value!r} (flag --engine or ${ENGINE_ENV})")
    return value


class FrozenForward:
    """A frozen model ready to run on image batches: `forward(x)` is model(x) in float32 (features for an extractor,
    logits for a model with a head). On the ONNX engine the backbone runs in ONNX Runtime (exported once per
    backbone and input size) and the head, if any, in torch. `record()` is what cards and tables store."""

    def __init__(self, engine: str, fn, amp: torch.dtype | None, channels_last: bool, reason: str,
                 timing: dict | None = None):
        self.engine, self._fn, self.amp, self.channels_last = engine, fn, amp, channels_last
        self.reason, self.timing = reason, timing or {}

    @property
    def precision(self) -> str:
        """The arithmetic of the features: 'float32' on ONNX Runtime, the autocast dtype's name on torch."""
        return str(self.amp or torch.float32).replace("torch.", "")

    def record(self) -> dict:
        out = {"engine": self.engine, "amp": self.precision, "channels_last": self.channels_last,
               "engine_reason": self.reason}
        return {**out, **({"engine_timing": self.timing} if self.timing else {})}

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return self._fn(x)


def _torch_forward(model: torch.nn.Module, amp: torch.dtype | None, channels_last: bool):
    def run(x: torch.Tensor) -> torch.Tensor:
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        with torch.inference_mode(), torch.autocast(x.device.type, dtype=amp, enabled=amp is not None):
            return model(x).float()
    return run


def _onnx_forward(model: torch.nn.Module, session):
    from core.models.factory import get_head

    head = get_head(model)
    identity = isinstance(head, torch.nn.Identity)

    def run(x: torch.Tensor) -> torch.Tensor:
        features = session(x).to(x.device)
        if identity:
            return features
        with torch.inference_mode():
            return head(features).float()
    return run


def _images_per_s(fn, x: torch.Tensor, repeats: int = 2) -> float:
    import time

    fn(x)  # warm-up: ORT plans its memory, torch's allocator settles
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn(x)
        best = min(best, time.perf_counter() - start)
    return len(x) / max(best, 1e-9)


def frozen_forward(model: torch.nn.Module, input_size, device: torch.device, *, engine: str | None = None,
                   amp_mode: str = "auto", cache_dir=None, framing: str | None = None,
                   weights_digest: str | None = None, log=None) -> FrozenForward:
    """The fastest measured way to run frozen `model` on (C, H, W) = `input_size` batches on `device`.

    engine auto (default): on the CPU, ONNX Runtime or torch, whichever ran a small batch faster on this machine
    (timed once, stored beside the export in `cache_dir`, the workspace's cache/onnx); on a GPU, torch. onnx / torch
    force one. ONNX needs amp_mode auto or off (it computes in float32). Export failure, a missing cache folder or
    features further than ONNX_TOLERANCE from torch float32 fall back to torch, with the reason logged and recorded.
    The model must already be on `device` (channels-last is applied here for torch)."""
    import json
    from pathlib import Path

    wanted = requested_engine(engine)
    model.eval()  # frozen: batch-norm running statistics, no dropout, on either engine
    amp, channels_last = inference_precision(device, amp_mode)
    say = log or (lambda message: None)

    def on_torch(reason: str, timing: dict | None = None) -> FrozenForward:
        if channels_last:
            model.to(memory_format=torch.channels_last)
        return FrozenForward("torch", _torch_forward(model, amp, channels_last), amp, channels_last, reason, timing)

    if getattr(model, "external_format", None):  # an imported model (core.models.external) already is its engine
        reason = f"an imported {model.external_format} model runs as it is"
        if model.external_format == "onnx":  # ONNX Runtime, float32: no autocast, no channels-last to record
            return FrozenForward("onnx", _torch_forward(model, None, False), None, False, reason)
        return on_torch(reason)
    if wanted == "torch":
        return on_torch("asked for (torch)")
    if amp_mode not in ("auto", "off"):
        return on_torch(f"autocast {amp_mode} asked for: ONNX Runtime computes in float32")
    if device.type != "cpu" and wanted == "auto":
        return on_torch(f"{device.type}: torch autocast is this device's fast path")
    from core.models import onnx_runtime

    if not onnx_runtime.available():
        return on_torch("onnxruntime is not installed")
    if device.type != "cpu" and "CUDAExecutionProvider" not in onnx_runtime.providers(device):
        return on_torch(f"onnxruntime has no provider for {device.type} here")
    if cache_dir is None:
        return on_torch("no workspace cache to keep the ONNX export in")
    folder = Path(cache_dir)
    size = [int(v) for v in input_size]
    try:
        path, key = onnx_runtime.cached_export(model, size, folder, framing=framing, weights_digest=weights_digest)
        session = onnx_runtime.OnnxModel(path, device)
    except Exception as exc:  # noqa: BLE001 - any export/load failure falls back to torch, named
        reason = f"ONNX export failed, running torch: {exc}"
        say(reason)
        return on_torch(reason)
    onnx_fn = _onnx_forward(model, session)
    timing_path = folder / f"{key}.{onnx_runtime.machine_id()}.{str(amp).replace('torch.', '')}.timing.json"
    try:
        timing = json.loads(timing_path.read_text())
    except (OSError, ValueError):
        timing = None
    if timing is None:
        # First use of this export on this machine: check the features, then time both engines on a small batch.
        x = torch.randn((_TIMING_BATCH, *size), generator=torch.Generator().manual_seed(0)).to(device)
        reference = _torch_forward(model, None, False)(x)
        drift = float((onnx_fn(x) - reference).norm() / reference.norm().clamp_min(1e-12))
        timing = {"rel_l2_vs_torch_fp32": drift, "batch": _TIMING_BATCH, "threads": torch.get_num_threads()}
        if drift <= ONNX_TOLERANCE:
            if channels_last:
                model.to(memory_format=torch.channels_last)
            timing["torch_images_per_s"] = _images_per_s(_torch_forward(model, amp, channels_last), x)
            timing["onnx_images_per_s"] = _images_per_s(onnx_fn, x)
            model.to(memory_format=torch.contiguous_format)
        from core.store.files import write_atomically

        write_atomically(timing_path, lambda tmp: Path(tmp).write_text(json.dumps(timing, indent=2)))
    drift = float(timing.get("rel_l2_vs_torch_fp32", float("inf")))
    if not drift <= ONNX_TOLERANCE:
        reason = f"ONNX features differ from torch's by {drift:.2e} (relative L2 > {ONNX_TOLERANCE:g}): torch"
        say(reason)
        return on_torch(reason, timing)
    if wanted == "auto" and timing.get("torch_images_per_s", 0.0) >= timing.get("onnx_images_per_s", 0.0):
        return on_torch(f"measured faster here ({timing['torch_images_per_s']:.1f} vs ONNX "
                        f"{timing['onnx_images_per_s']:.1f} img/s)", timing)
    why = "asked for (onnx)" if wanted == "onnx" else (
        f"measured faster here ({timing['onnx_images_per_s']:.1f} vs torch "
        f"{timing['torch_images_per_s']:.1f} img/s)")
    return FrozenForward("onnx", onnx_fn, None, False, why, timing)
