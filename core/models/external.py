"""Models trained elsewhere (ONNX, TorchScript) as runs: the card a user fills in, the checks that keep pickles out,
and the wrapper that makes such a model answer like one of ours (one logit per class, in the task's class order).

What is loaded and what is refused (nothing is ever unpickled by Python's pickle):
- ONNX: a protobuf graph run by ONNX Runtime (core.models.onnx_runtime); it holds no code, only operators.
- TorchScript: a zip written by `torch.jit.save` (`<root>/code/` + `<root>/constants.pkl` + `<root>/data.pkl`).
  `torch.jit.load` reads its .pkl entries with TorchScript's own C++ unpickler, which rebuilds tensors, plain
  containers and the TorchScript classes compiled from the archive's code/ and refuses any other Python global
  (a `__reduce__` naming os.system fails with "Unknown type name"); the code is compiled by the TorchScript
  compiler, which can call registered torch operators only, not Python. That is the one format loaded this way.
- A `torch.save` file (a zip with data.pkl but no code/, or a bare pickle stream) is a Python pickle: loading it
  can run any code hidden in it. It is refused by looking at the file's bytes and zip directory, never loaded.
"""

from __future__ import annotations

import json
import tomllib
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from core.errors import InputError
from core.store.integrity import file_sha256
from core.models.preprocess import DEFAULT_FRAMING, FRAMINGS, stated_preprocess_config

CARD_KEY = "external"  # the product card's record of an imported model
FORMATS = {"onnx": "model.onnx", "torchscript": "model.torchscript.pt"}  # format -> file name in checkpoint/
MODEL_SUFFIXES = {".onnx": "onnx", ".pt": "torchscript", ".pth": "torchscript", ".ts": "torchscript",
                  ".torchscript": "torchscript", ".zip": "torchscript"}
OUTPUT_KINDS = {
    "probabilities": "probabilities: rows sum to 1 (one column per class), or per class for multi-label tasks",
    "logits": "logits: softmax gives the probabilities (sigmoid per class for multi-label tasks)",
    "sigmoid-logits": "sigmoid logits: one independent sigmoid per column (multi-label tasks, or a binary model's "
                      "one column, the score of the second class)",
}
CHANNELS = (1, 3)
# What the card may carry through to the run's model card unchanged (read by their own owners when used).
PASSED_THROUGH = ("operating_point", "referral_band", "referral_calibration", "binary", "source_task",
                  "training_prior", "exported_from")
_CARD_FIELDS = {"name", "task", "classes", "kind", "input_size", "channels", "mean", "std", "framing",
                "interpolation", "crop_pct", "output", "description", *PASSED_THROUGH}


@dataclass(frozen=True)
class ExternalCard:
    """What a model trained elsewhere needs to be run like ours. `classes` is the model's OUTPUT order (it may
    differ from the task's); `task` is a preset name, a task dict, or None (a custom task of `classes`)."""

    classes: tuple[str, ...]
    input_size: tuple[int, int]
    channels: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    output: str
    framing: str = DEFAULT_FRAMING
    interpolation: str = "bilinear"
    crop_pct: float = 0.875
    kind: str | None = None  # the task's kind (core.data.tasks.KINDS) when the card gives no task
    task: str | dict | None = None
    name: str | None = None
    passed: dict = field(default_factory=dict)

    @property
    def multilabel(self) -> bool:
        kind = self.kind or (self.task.get("kind") if isinstance(self.task, dict) else None)
        return kind == "multilabel"

    def preprocessing(self) -> dict:
        """The product's preprocessing description (three channels: a one-channel model's mean/std repeated)."""
        mean = self.mean * 3 if self.channels == 1 else self.mean
        std = self.std * 3 if self.channels == 1 else self.std
        return stated_preprocess_config(self.input_size, mean, std, interpolation=self.interpolation,
                                        framing=self.framing, crop_pct=self.crop_pct)

    def to_dict(self) -> dict:
        """The card as import-model reads it back (card.json of an export)."""
        out = {"classes": list(self.classes), **({"kind": self.kind} if self.kind else {}),
               "input_size": list(self.input_size), "channels": self.channels, "mean": list(self.mean),
               "std": list(self.std), "framing": self.framing, "interpolation": self.interpolation,
               "crop_pct": self.crop_pct, "output": self.output}
        if self.task is not None:
            out["task"] = self.task
        if self.name:
            out["name"] = self.name
        return {**out, **self.passed}


def _numbers(source: str, name: str, value, count: int, positive: bool = False) -> tuple[float, ...]:
    values = [value] if isinstance(value, (int, float)) and not isinstance(value, bool) else value
    try:
        numbers = tuple(float(v) for v in values)
    except (TypeError, ValueError):
        raise InputError(f"{source}: {name!r} must be a number or a list of {count} numbers, not {value!r}") from None
    if len(numbers) == 1 and count > 1:
        numbers = numbers * count
    if len(numbers) != count or not all(np.isfinite(numbers)) or (positive and min(numbers) <= 0):
        raise InputError(f"{source}: {name!r} must be {count} {'positive ' if positive else ''}number(s), one per "
                         f"input channel, not {value!r}")
    return numbers


def parse_card(data: dict, source: str = "model card") -> ExternalCard:
    """A user's card (a dict from JSON or TOML) checked field by field; every problem names the field."""
    if not isinstance(data, dict):
        raise InputError(f"{source}: a model card is a JSON object or TOML table, not {type(data).__name__}")
    unknown = sorted(set(data) - _CARD_FIELDS)
    if unknown:
        raise InputError(f"{source}: unknown field(s) {', '.join(unknown)}; a card has {', '.join(sorted(_CARD_FIELDS))}")
    task = data.get("task")
    classes = data.get("classes")
    if classes is None and isinstance(task, dict):
        classes = task.get("classes")
    if classes is None and task is None:
        raise InputError(f"{source}: 'classes' is missing: name the model's outputs in order, e.g. "
                         "[\"NORMAL\", \"PNEUMONIA\"] (or give a 'task')")
    if classes is not None and (isinstance(classes, str) or not isinstance(classes, (list, tuple))
                                or not all(isinstance(c, str) and c for c in classes)):
        raise InputError(f"{source}: 'classes' must be a list of class names in the model's output order")
    if classes is not None and len(set(classes)) != len(classes):
        raise InputError(f"{source}: 'classes' names a class twice ({list(classes)})")
    if task is not None and not isinstance(task, (str, dict)):
        raise InputError(f"{source}: 'task' must be a task name (e.g. \"oct-kermany\") or a task table")
    kind = data.get("kind")
    if kind is not None and not isinstance(kind, str):
        raise InputError(f"{source}: 'kind' must be a task kind such as multiclass or multilabel, not {kind!r}")
    size = data.get("input_size")
    if size is None:
        raise InputError(f"{source}: 'input_size' is missing: the model's input height and width in pixels, "
                         "e.g. [224, 224]")
    sides = _numbers(source, "input_size", size, 2, positive=True)
    if any(s != int(s) or not 8 <= s <= 4096 for s in sides):
        raise InputError(f"{source}: 'input_size' sides must be whole numbers of pixels in 8..4096, not {size!r}")
    channels = data.get("channels", 3)
    if channels not in CHANNELS or isinstance(channels, bool):
        raise InputError(f"{source}: 'channels' must be 1 (greyscale) or 3 (RGB), not {channels!r}")
    for name in ("mean", "std"):
        if name not in data:
            raise InputError(f"{source}: {name!r} is missing: the per-channel {name} the model was trained with "
                             "(on 0..1 pixel values), e.g. [0.485, 0.456, 0.406]")
    output = data.get("output")
    if output not in OUTPUT_KINDS:
        raise InputError(f"{source}: 'output' must say what the model returns: one of {', '.join(OUTPUT_KINDS)}, "
                         f"not {output!r}")
    framing = data.get("framing", DEFAULT_FRAMING)
    if framing not in FRAMINGS:
        raise InputError(f"{source}: 'framing' must be one of {', '.join(FRAMINGS)}, not {framing!r}")
    crop_pct = _numbers(source, "crop_pct", data.get("crop_pct", 0.875), 1, positive=True)[0]
    card = ExternalCard(
        classes=tuple(classes or ()), input_size=(int(sides[0]), int(sides[1])), channels=int(channels),
        mean=_numbers(source, "mean", data["mean"], int(channels)),
        std=_numbers(source, "std", data["std"], int(channels), positive=True), output=str(output),
        framing=str(framing), interpolation=str(data.get("interpolation") or "bilinear"), crop_pct=min(crop_pct, 1.0),
        kind=kind, task=task, name=str(data["name"]) if data.get("name") else None,
        passed={k: data[k] for k in PASSED_THROUGH if data.get(k) is not None})
    card.preprocessing()  # the interpolation and framing checked by their owner
    if output == "sigmoid-logits" and not card.multilabel and card.classes and len(card.classes) > 2:
        raise InputError(f"{source}: 'sigmoid-logits' fits a multi-label task or a binary model's one column; a "
                         f"single-label model of {len(card.classes)} classes gives 'logits' or 'probabilities'")
    return card


def read_card_file(path: str | Path) -> ExternalCard:
    """A card from a .json or .toml file."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"{path.name}: the model card cannot be read ({exc})") from None
    try:
        data = tomllib.loads(text) if path.suffix.lower() == ".toml" else json.loads(text)
    except (tomllib.TOMLDecodeError, json.JSONDecodeError) as exc:
        kind = "TOML" if path.suffix.lower() == ".toml" else "JSON"
        raise InputError(f"{path.name}: not a readable {kind} model card ({exc})") from None
    return parse_card(data, path.name)


# -- what the file is -------------------------------------------------------------------------------------------
PICKLE_REFUSED = ("{name} is a Python pickle ({what}), not a TorchScript archive or an ONNX model, and is refused "
                  "without being loaded: loading a pickle can run any code hidden in it. Save the model with "
                  "torch.jit.script(model).save(path) (or torch.jit.trace), or export it to ONNX, and give that")


def model_format(path: str | Path) -> str:
    """'onnx' or 'torchscript' for a model file, by its bytes (a TorchScript file is checked as an archive)."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: no such model file")
    with open(path, "rb") as fh:
        head = fh.read(4)
    if head[:2] == b"PK":
        check_torchscript_archive(path)
        return "torchscript"
    if head[:1] == b"\x80" or path.suffix.lower() in (".pkl", ".pickle"):
        raise InputError(PICKLE_REFUSED.format(name=path.name, what="a pickle stream, as old torch.save writes"))
    if MODEL_SUFFIXES.get(path.suffix.lower()) == "onnx":
        return "onnx"
    raise InputError(f"{path.name}: not a model this product runs: give an ONNX model (.onnx) or a TorchScript "
                     "archive (.pt written by torch.jit.save)")


def check_torchscript_archive(path: str | Path) -> None:
    """A zip that is a TorchScript archive (code/ and constants.pkl beside data.pkl); a torch.save zip (data.pkl
    without code/) is refused by its directory alone."""
    path = Path(path)
    try:
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
    except (zipfile.BadZipFile, OSError) as exc:
        raise InputError(f"{path.name}: not a readable zip archive ({exc})") from None
    has_code = any("/code/" in f"/{n}" and n.endswith(".py") for n in names)
    has_constants = any(n.endswith("constants.pkl") for n in names)
    if has_code and has_constants:
        return
    if any(n.endswith("data.pkl") for n in names):
        raise InputError(PICKLE_REFUSED.format(name=path.name, what="a torch.save file: data.pkl without TorchScript "
                                                                    "code/"))
    raise InputError(f"{path.name}: a zip file but not a TorchScript archive (no code/ and constants.pkl in it)")




# -- running it -------------------------------------------------------------------------------------------------
class _OnnxRunner:
    """ONNX Runtime sessions of one model file, one per device kind (CUDA provider when the input is on a GPU).
    Not an nn.Module: a deep copy (the Explain page's worker) shares the sessions, which are safe across threads."""

    def __init__(self, path: Path):
        from core.models.onnx_runtime import OnnxModel

        self.path = Path(path)
        try:
            self.sessions = {"cpu": OnnxModel(self.path, device="cpu")}
        except InputError:
            raise
        except Exception as exc:  # onnxruntime raises its own exception types for a damaged graph
            raise InputError(f"{self.path.name}: not a readable ONNX model ({str(exc).strip()[:300]})") from None

    @property
    def input_shape(self):
        return self.sessions["cpu"].input_shape

    @property
    def output_shapes(self):
        return self.sessions["cpu"].output_shapes

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        kind = x.device.type
        if kind not in self.sessions:
            from core.models.onnx_runtime import OnnxModel

            self.sessions[kind] = OnnxModel(self.path, device=str(x.device))
        return self.sessions[kind](x.detach().float().contiguous()).to(x.device).float()

    def __deepcopy__(self, memo):
        return self


class _Stage(nn.Module):
    """One stage of a TorchScript chain as a Python module, so a forward hook (Grad-CAM) can read its output:
    TorchScript modules refuse hooks."""

    def __init__(self, inner: nn.Module):
        super().__init__()
        self.inner = inner

    def forward(self, x):
        return self.inner(x)


def _contains_conv(module: nn.Module) -> bool:
    return any(getattr(m, "original_name", type(m).__name__) in ("Conv2d", "Conv2dNormActivation")
               for m in module.modules())


class ExternalClassifier(nn.Module):
    """A model trained elsewhere answering like one of ours: (batch, 3, H, W) normalised images in, one logit per
    task class out (softmax, or sigmoid for multi-label tasks, gives its probabilities). `order[k]` is the model
    output column of the task's class k; a binary model's one column is the second class's score."""

    def __init__(self, fmt: str, runner, *, output: str, order: list[int], channels: int, multilabel: bool,
                 single_column: bool, weights_source: str):
        super().__init__()
        self.external_format = fmt
        self.output = output
        self.order = list(order)
        self.channels = int(channels)
        self.multilabel = bool(multilabel)
        self.single_column = bool(single_column)
        self.num_classes = 2 if single_column else len(order)
        self.weights_source = weights_source
        self.gradcam_layer = None
        self.layers_unreachable = None
        if fmt == "onnx":
            self._runner = runner
            self.layers_unreachable = ("an ONNX model is run by ONNX Runtime as one closed function: its layers and "
                                       "gradients cannot be read, so Grad-CAM is not offered; occlusion needs only "
                                       "the model's outputs")
        elif getattr(runner, "original_name", "") == "Sequential" and len(list(runner.children())) > 1:
            # A chain of stages: run them one by one so a stage's output (a feature map) can be read.
            self.net = nn.Sequential(*[_Stage(child) for child in runner.children()])
        else:
            self.net = runner
            self.layers_unreachable = ("this TorchScript model is one compiled function (TorchScript modules accept "
                                       "no hooks), so no convolutional layer's output can be read and Grad-CAM is "
                                       "not offered. Save it as a chain of stages, torch.nn.Sequential(features, "
                                       "head), to get Grad-CAM; occlusion needs only the model's outputs")

    def choose_gradcam_layer(self, probe: torch.Tensor) -> None:
        """For a TorchScript chain: the last stage that holds a convolution and returns a (B, C, h, w) map."""
        if not isinstance(getattr(self, "net", None), nn.Sequential) or not all(
                isinstance(s, _Stage) for s in self.net):
            return
        chosen, x = None, probe
        with torch.no_grad():
            for i, stage in enumerate(self.net):
                x = stage(x)
                if isinstance(x, torch.Tensor) and x.dim() == 4 and _contains_conv(stage):
                    chosen = f"net.{i}"
        if chosen is None:
            self.layers_unreachable = ("no stage of this TorchScript chain holds a convolution that returns a feature "
                                       "map, so Grad-CAM is not offered; occlusion needs only the model's outputs")
        self.gradcam_layer = chosen

    def raw(self, x: torch.Tensor) -> torch.Tensor:
        """The model's own outputs for normalised 3-channel images (a one-channel model gets their mean)."""
        if self.channels == 1 and x.shape[1] != 1:
            x = x.mean(dim=1, keepdim=True)
        out = self._runner(x) if self.external_format == "onnx" else self.net(x)
        if isinstance(out, (tuple, list)):
            out = out[0]
        return out.float()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.raw(x)
        if y.dim() != 2:
            raise InputError(f"the model must return (batch, classes) scores, got shape {tuple(y.shape)}")
        eps = 1e-7
        if self.single_column:
            z = y[:, :1]
            if self.output == "probabilities":
                p = z.clamp(eps, 1 - eps)
                return torch.cat([torch.log1p(-p), torch.log(p)], dim=1)
            return torch.cat([torch.zeros_like(z), z], dim=1)
        y = y[:, self.order]
        if self.output != "probabilities":
            return y
        p = y.clamp(eps, 1 - eps)
        return torch.log(p) - torch.log1p(-p) if self.multilabel else torch.log(p)


def external_record(card: ExternalCard, fmt: str, digest: str, source_name: str, task_classes) -> dict:
    """The product card's `external` key: the file, its format and digest, and how its outputs are read."""
    return {"format": fmt, "file": FORMATS[fmt], "sha256": digest, "output": card.output,
            "output_classes": list(card.classes), "task_classes": list(task_classes), "channels": card.channels,
            "input_size": list(card.input_size), "imported_from": Path(source_name).name}


def _order(record: dict, source: str) -> list[int]:
    """Per task class, the model output column holding it."""
    outputs = [str(c) for c in record.get("output_classes") or []]
    wanted = [str(c) for c in record.get("task_classes") or []]
    if sorted(outputs) != sorted(wanted):
        raise InputError(f"{source}: the model's classes ({', '.join(outputs)}) are not the task's "
                         f"({', '.join(wanted)})")
    return [outputs.index(c) for c in wanted]


def build_classifier(path: Path, record: dict, multilabel: bool, source: str) -> ExternalClassifier:
    """Load the file (format checked by its bytes first) and wrap it; no shape check yet (see check_shapes)."""
    fmt = model_format(path)
    if fmt != record.get("format"):
        raise InputError(f"{source}: the card says {record.get('format')!r} but {path.name} is {fmt}")
    order = _order(record, source)
    if fmt == "onnx":
        runner = _OnnxRunner(path)
    else:
        import warnings

        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", FutureWarning)  # torch.jit.load's deprecation notice
                runner = torch.jit.load(str(path), map_location="cpu")
        except Exception as exc:  # the TorchScript loader raises RuntimeError for anything it refuses
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            raise InputError(f"{path.name}: the TorchScript archive could not be loaded ({first[:300]})") from None
        runner.eval()
    model = ExternalClassifier(fmt, runner, output=str(record.get("output")), order=order,
                               channels=int(record.get("channels") or 3), multilabel=multilabel,
                               single_column=bool(record.get("single_column")),
                               weights_source=f"{fmt} sha256:{str(record.get('sha256') or '')[:16]}")
    return model.eval()


def _declared_shape(shape) -> list:
    return [d if isinstance(d, int) and d > 0 else None for d in (shape or [])]


def check_shapes(model: ExternalClassifier, record: dict, name: str) -> bool:
    """Refuse a model whose declared or actual input/output shape differs from the card; returns whether it gives
    one column for a binary task (the second class's score). Runs the model once on two blank images."""
    height, width = (int(v) for v in record["input_size"])
    channels = int(record.get("channels") or 3)
    n_classes = len(record.get("task_classes") or [])
    said = f"the card says ({channels}, {height}, {width})"
    if model.external_format == "onnx":
        declared = _declared_shape(model._runner.input_shape)
        if len(declared) != 4:
            raise InputError(f"{name}: the model's input has {len(declared)} dimensions "
                             f"({model._runner.input_shape}); an image model takes (batch, channels, height, width)")
        for got, want, what in zip(declared[1:], (channels, height, width), ("channels", "height", "width")):
            if got is not None and got != want:
                raise InputError(f"{name}: the model's input is {tuple(model._runner.input_shape)[1:]} "
                                 f"(channels, height, width) but {said}: its {what} is {got}, not {want}")
        outputs = [_declared_shape(s) for s in model._runner.output_shapes]
        if outputs and len(outputs[0]) == 2 and outputs[0][1] is not None and outputs[0][1] not in (n_classes, 1):
            raise InputError(f"{name}: the model gives {outputs[0][1]} scores per image but the card names "
                             f"{n_classes} classes ({', '.join(record['output_classes'])})")
    probe = torch.zeros(2, 3, height, width)
    try:
        with torch.inference_mode():
            out = model.raw(probe)
    except InputError:
        raise
    except Exception as exc:  # the model's own error for an input it cannot take
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise InputError(f"{name}: the model fails on a ({channels}, {height}, {width}) input as {said} "
                         f"({first[:300]})") from None
    if out.dim() != 2 or out.shape[0] != 2:
        raise InputError(f"{name}: the model returns shape {tuple(out.shape)} for 2 images; it must return "
                         "(batch, classes) scores")
    single = out.shape[1] == 1 and n_classes == 2 and not model.multilabel
    if out.shape[1] != n_classes and not single:
        raise InputError(f"{name}: the model gives {out.shape[1]} scores per image but the card names {n_classes} "
                         f"classes ({', '.join(record['output_classes'])})")
    if single and record.get("output") == "logits":
        raise InputError(f"{name}: the model gives one score per image; say 'sigmoid-logits' (or 'probabilities') "
                         "for a binary model's one column")
    values = out.numpy()
    if record.get("output") == "probabilities":
        if not np.all((values >= -1e-6) & (values <= 1 + 1e-6)):
            raise InputError(f"{name}: the card says probabilities, but the model gives values outside 0..1 (e.g. "
                             f"{float(values.flat[np.argmax(np.abs(values - 0.5))]):.3g}): say 'logits' or "
                             "'sigmoid-logits'")
        if not single and not model.multilabel and not np.allclose(values.sum(axis=1), 1.0, atol=1e-3):
            raise InputError(f"{name}: the card says probabilities, but a row sums to {values.sum(axis=1)[0]:.3g}, "
                             "not 1: say 'sigmoid-logits' for independent per-class scores")
    return single


def load_external(path: str | Path, card: dict) -> tuple[nn.Module, dict]:
    """(wrapped model in eval mode on the CPU, card) for an imported run's model file; its digest must match the
    card's (the file is what was checked at import)."""
    path = Path(path)
    record = card.get(CARD_KEY) or {}
    if not isinstance(record, dict) or record.get("format") not in FORMATS:
        raise InputError(f"{path.parent / 'model_card.json'}: the card's {CARD_KEY!r} record is damaged")
    if record.get("sha256") and file_sha256(path) != record["sha256"]:
        raise InputError(f"{path}: the model file changed since it was imported (its sha256 differs from the "
                         "card's); import it again")
    model = build_classifier(path, record, card.get("kind") == "multilabel", path.name)
    height, width = (int(v) for v in record["input_size"])
    model.choose_gradcam_layer(torch.zeros(1, 3, height, width))
    return model, card
