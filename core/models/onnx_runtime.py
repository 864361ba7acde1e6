"""ONNX in this product, in one place: exporting a torch module, and running an exported model with ONNX Runtime.

Feature extraction, predict and occlusion reach it through core.models.precision.frozen_forward (the engine
choice); imported ONNX models are opened with OnnxModel. Exports use torch's dynamo exporter (torch.export): the
legacy TorchScript exporter cannot trace the feature ensemble (its member resize rounds a traced shape).
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import io
import json
import os
from pathlib import Path

import numpy as np
import torch

from core.errors import InputError
from core.store.files import write_atomically

OPSET = 18  # the dynamo exporter's own opset; Resize with antialias (the ensemble's member inputs) needs >= 18


def available() -> bool:
    """True when onnxruntime (and the exporter's onnx/onnxscript) can be imported."""
    try:
        import onnx  # noqa: F401
        import onnxruntime  # noqa: F401
        import onnxscript  # noqa: F401
    except ImportError:
        return False
    return True


def providers(device: str | torch.device = "cpu") -> list[str]:
    """ONNX Runtime execution providers for `device`: CUDA first when asked for and installed, CPU always."""
    import onnxruntime as ort

    kind = torch.device(device).type if not isinstance(device, torch.device) else device.type
    present = ort.get_available_providers()
    chosen = ["CUDAExecutionProvider"] if kind == "cuda" and "CUDAExecutionProvider" in present else []
    return chosen + ["CPUExecutionProvider"]


def export(module: torch.nn.Module, example: torch.Tensor, path: str | Path, *, opset: int = OPSET,
           input_name: str = "x", output_names: tuple[str, ...] = ("y",), dynamic_batch: bool = True) -> Path:
    """Write `module` (eval mode, no gradients) as an ONNX file at `path`, atomically; the batch dimension is
    dynamic unless told otherwise. Raises InputError naming the exporter's complaint when it cannot be exported."""
    if not available():
        raise InputError("ONNX export needs onnxruntime, onnx and onnxscript (pip install -r requirements.txt)")
    path = Path(path)
    was_training = module.training
    module.eval()
    example = example.detach().float().contiguous()
    if dynamic_batch and example.shape[0] < 2:
        example = example.expand(2, *example.shape[1:]).contiguous()  # a batch of 1 would be specialised to 1
    shapes = ({0: torch.export.Dim("batch", min=1)},) if dynamic_batch else None

    def write(tmp: str) -> None:
        # The exporter narrates each stage on stdout/stderr; keep the product's logs readable.
        with torch.no_grad(), contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            program = torch.onnx.export(module, (example,), dynamo=True, input_names=[input_name],
                                        output_names=list(output_names), opset_version=int(opset),
                                        dynamic_shapes=shapes, external_data=False)
            program.save(tmp, external_data=False)

    try:
        write_atomically(path, write)
    except InputError:
        raise
    except Exception as exc:  # noqa: BLE001 - exporter failures vary by torch version and operator
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:300]
        raise InputError(f"could not export {type(module).__name__} to ONNX: {first}") from exc
    finally:
        module.train(was_training)
    return path


class OnnxModel:
    """An ONNX file run by ONNX Runtime (intra-op threads as torch's, every graph optimisation): call it on a
    batch (torch tensor or numpy array) to get its first output as a float32 torch tensor."""

    def __init__(self, path: str | Path, device: str | torch.device = "cpu"):
        if not available():
            raise InputError("running an ONNX model needs onnxruntime (pip install -r requirements.txt)")
        import onnxruntime as ort

        self.path = Path(path)
        if not self.path.is_file():
            raise InputError(f"{self.path}: no such ONNX file")
        options = ort.SessionOptions()
        options.intra_op_num_threads = max(1, torch.get_num_threads())
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.log_severity_level = 3  # errors only: ORT's warnings about unused initialisers are not the user's
        try:
            self.session = ort.InferenceSession(str(self.path), options, providers=providers(device))
        except Exception as exc:  # noqa: BLE001 - ORT raises its own Fail/InvalidProtobuf/InvalidGraph types
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:300]
            raise InputError(f"{self.path.name}: not a valid ONNX model ({first})") from exc
        inputs = self.session.get_inputs()
        if len(inputs) != 1:
            raise InputError(f"{self.path.name}: the model takes {len(inputs)} inputs; one image batch is expected")
        self._input = inputs[0]

    @property
    def input_name(self) -> str:
        return self._input.name

    @property
    def input_shape(self) -> list:
        """The input's shape; a dynamic dimension is its name (str) or None."""
        return list(self._input.shape)

    @property
    def output_shapes(self) -> list[list]:
        return [list(o.shape) for o in self.session.get_outputs()]

    def run(self, x: torch.Tensor | np.ndarray) -> list[np.ndarray]:
        """Every output for batch `x` (float32)."""
        if isinstance(x, torch.Tensor):
            x = x.detach().to("cpu", torch.float32).contiguous().numpy()
        return self.session.run(None, {self.input_name: np.ascontiguousarray(x, dtype=np.float32)})

    def __call__(self, x: torch.Tensor | np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.asarray(self.run(x)[0], dtype=np.float32))


def features_module(model: torch.nn.Module) -> torch.nn.Module:
    """A copy of `model` that returns the pooled features its head receives (its classifier slot emptied): what
    is exported once per backbone, so every head trained on that backbone shares the export."""
    from core.models.weights import classifier_prefix

    prefix = classifier_prefix(model)
    head = model.get_submodule(prefix)
    if isinstance(head, torch.nn.Identity):
        return model
    copied = copy.deepcopy(model)
    parent_name, _, child = prefix.rpartition(".")
    setattr(copied.get_submodule(parent_name) if parent_name else copied, child, torch.nn.Identity())
    return copied.eval()


def export_key(weights_digest: str, input_size, framing: str | None, opset: int = OPSET) -> str:
    """What an exported backbone depends on: its tensors, the input size, the framing (kept so a key names the
    preprocessing it serves), the opset and the exporter's torch version."""
    payload = {"weights": weights_digest, "input_size": [int(v) for v in input_size], "framing": framing,
               "opset": int(opset), "torch": torch.__version__.split("+")[0]}
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:32]


def cached_export(module: torch.nn.Module, input_size, folder: str | Path, *, framing: str | None = None,
                  weights_digest: str | None = None, opset: int = OPSET) -> tuple[Path, str]:
    """(path, key) of `module`'s features exported at `input_size` (C, H, W) under `folder` (the workspace's
    cache/onnx), exporting only when no valid file for this key is there yet."""
    from core.models.feature_stats import backbone_digest

    module = features_module(module)
    digest = weights_digest or backbone_digest(module)
    key = export_key(digest, input_size, framing, opset)
    path = Path(folder) / f"{key}.onnx"
    if not path.is_file() or path.stat().st_size == 0:
        example = torch.zeros((2, *[int(v) for v in input_size]))
        export(module, example, path, opset=opset)
        note = {"weights_sha256": digest, "input_size": [int(v) for v in input_size], "framing": framing,
                "opset": int(opset), "torch": torch.__version__, "module": type(module).__name__}
        write_atomically(path.with_suffix(".json"), lambda tmp: Path(tmp).write_text(json.dumps(note, indent=2)))
    return path, key


def machine_id() -> str:
    """This machine as engine timings see it: CPU model, torch's thread count, ORT and torch versions."""
    model = ""
    with contextlib.suppress(OSError):
        with open("/proc/cpuinfo") as fh:
            model = next((line.split(":", 1)[1].strip() for line in fh if line.startswith("model name")), "")
    import onnxruntime as ort

    text = f"{model}|{os.cpu_count()}|{torch.get_num_threads()}|{ort.__version__}|{torch.__version__}"
    return hashlib.sha256(text.encode()).hexdigest()[:16]
