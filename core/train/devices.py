"""Which compute devices this machine offers a training run (for the dashboard's device choice)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class DeviceOptions:
    """The choices to offer: always 'auto' and 'cpu'; 'cuda' (and 'cuda:N') only when a GPU is usable."""

    choices: tuple[str, ...]
    cuda_available: bool
    explanation: str  # one sentence on what 'auto' picks, or why CUDA is not offered


def no_cuda_reason(torch_version: str, cuda_version: str | None) -> str:
    """Why CUDA is not offered, in true words: a PyTorch built with CUDA support that finds no device (no NVIDIA
    GPU, or no working driver) is not a CPU-only build. `torch_version` is torch.__version__ ("2.14.1+cu130": the
    local part after "+" is dropped), `cuda_version` torch.version.cuda (None for a CPU-only build)."""
    version = torch_version.split("+")[0]
    if cuda_version:
        build = (f"PyTorch {version} is built with CUDA {cuda_version} support, but no CUDA device was found "
                 "(no NVIDIA GPU, or its driver is missing or too old)")
    else:
        build = f"PyTorch {version} is a CPU-only build (no CUDA support)"
    return f"CUDA is not offered: torch.cuda.is_available() is False here: {build}. 'auto' trains on the CPU."


def device_options() -> DeviceOptions:
    import torch  # only here: pages and the run list stay torch-free

    if not torch.cuda.is_available():
        return DeviceOptions(("auto", "cpu"), False, no_cuda_reason(torch.__version__, torch.version.cuda))
    count = torch.cuda.device_count()
    names = [torch.cuda.get_device_name(i) for i in range(count)]
    extra = tuple(f"cuda:{i}" for i in range(count)) if count > 1 else ()
    listed = ", ".join(f"cuda:{i} {n}" for i, n in enumerate(names))
    return DeviceOptions(("auto", "cuda", *extra, "cpu"), True, f"'auto' trains on the GPU ({listed}).")
