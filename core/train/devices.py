"""Which compute devices this machine offers a training run (for the dashboard's device choice)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class DeviceOptions:
    """The choices to offer: always 'auto' and 'cpu'; 'cuda' (and 'cuda:N') only when a GPU is usable."""

    choices: tuple[str, ...]
    cuda_available: bool
    explanation: str  # one sentence on what 'auto' picks, or why CUDA is not offered


def device_options() -> DeviceOptions:
    import torch  # only here: pages and the run list stay torch-free

    if not torch.cuda.is_available():
        reason = ("CUDA is not offered: torch.cuda.is_available() is False on this machine (no NVIDIA GPU, no "
                  f"driver, or a CPU-only PyTorch build {torch.__version__}). 'auto' trains on the CPU.")
        return DeviceOptions(("auto", "cpu"), False, reason)
    count = torch.cuda.device_count()
    names = [torch.cuda.get_device_name(i) for i in range(count)]
    extra = tuple(f"cuda:{i}" for i in range(count)) if count > 1 else ()
    listed = ", ".join(f"cuda:{i} {n}" for i, n in enumerate(names))
    return DeviceOptions(("auto", "cuda", *extra, "cpu"), True, f"'auto' trains on the GPU ({listed}).")
