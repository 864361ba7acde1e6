"""RunConfig: the frozen, JSON-saved record of everything needed to repeat a training run."""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from core.errors import InputError

MODES = ("features", "finetune")
HEADS = ("linear", "mlp")
# How features mode fits its head: "logistic" = L2 logistic regression, strength by patient-grouped CV, refit on
# every training image (the default: benchmarks/bench_recipes.py); "adam" = epochs of Adam with a validation split.
HEAD_FITS = ("logistic", "adam")
BALANCE = ("none", "weights", "sampler")
VAL_METRICS = ("auto", "auroc", "accuracy", "kappa", "loss")
AMP_MODES = ("auto", "bf16", "fp16", "off")
BN_MODES = ("train", "frozen")
OPTIMIZERS = ("adam", "adamw", "sgd")
SCHEDULES = ("cosine", "constant")
CONFIG_VERSION = 2
# The features-mode default won benchmarks/bench_recipes.py: the Lite0+1+2 feature ensemble with 3 acquisition
# views and the logistic probe. Fine-tuning trains one network: Lite0 (offline ImageNet weights, fast on a CPU).
FEATURES_BACKBONE = "efficientnet_lite012"
FINETUNE_BACKBONE = "tf_efficientnet_lite0"
# Version 1 configs (before framings and the logistic probe) trained like this; loading one keeps its recipe.
_V1_DEFAULTS = {"framing": "center", "head_fit": "adam", "views": 0, "backbone": "tf_efficientnet_lite0"}
DEFAULT_VIEWS = 3
MAX_VIEWS = 8

# Defaults that differ between the paper's cached-features method and fine-tuning.
_MODE_DEFAULTS = {
    "features": {"optimizer": "adam", "lr": 1e-3, "weight_decay": 0.0, "epochs": 30, "batch_size": 64,
                 "warmup_epochs": 0.0, "schedule": "constant", "patience": 8},
    "finetune": {"optimizer": "adamw", "lr": 3e-4, "weight_decay": 0.05, "epochs": 10, "batch_size": 32,
                 "warmup_epochs": 1.0, "schedule": "cosine", "patience": 3},
}


@dataclass(frozen=True)
class RunConfig:
    """A training run's full recipe. `None` fields take the mode's default when the config is built."""

    data: str = ""
    task: dict | None = None                 # Task.to_dict() of the dataset's task (custom tasks travel)
    dataset_fingerprint: str | None = None   # filled in when the run starts; checked on resume
    dataset_id: str | None = None
    name: str = ""
    backbone: str | None = None              # None: default_backbone(mode)
    pretrained: bool = True
    weights_file: str | None = None
    mode: str = "features"
    head: str = "linear"
    head_fit: str | None = None              # features mode: "logistic" (linear head) or "adam"; None = by head
    framing: str | None = None               # squash | letterbox | center; None = core.models.DEFAULT_FRAMING
    views: int | None = None                 # features mode: acquisition views per training image (cached)
    operating_rule: str = "youden"           # how the model's operating point is set (model_operating_point)
    target_sensitivity: float | None = None  # for operating_rule "sensitivity"
    image_size: int | None = None            # None: the backbone's own input size
    optimizer: str | None = None
    lr: float | None = None
    weight_decay: float | None = None
    epochs: int | None = None
    batch_size: int | None = None
    warmup_epochs: float | None = None
    schedule: str | None = None
    accumulate: int = 1                      # gradient accumulation steps (finetune)
    unfreeze: int | str = "all"              # finetune: number of last stages to train, or "all"
    bn: str = "train"                        # "frozen" keeps BatchNorm statistics fixed while fine-tuning
    drop_rate: float = 0.0
    augmentation: bool = True                # finetune only; evaluation never augments
    augment: dict | None = None              # overrides of core.models' DEFAULT_AUGMENT (hflip, rotate_deg, ...)
    amp: str = "auto"
    channels_last: bool | None = None        # None: on for CUDA
    balance: str = "none"
    per_class: int | None = None
    fraction: float | None = None
    binary: dict | str | None = None         # a view name, "POS[,POS][:NEG,...]", or {"positive", "negative"}
    val_fraction: float = 0.2
    val_metric: str = "auto"
    patience: int | None = None              # early stopping, in epochs without improvement; 0 = off
    seed: int = 0
    device: str = "auto"
    num_workers: int | None = None
    evaluate_test: bool = True
    version: int = CONFIG_VERSION
    extra: dict = field(default_factory=dict)  # free-form notes carried with the run

    def __post_init__(self):
        if isinstance(self.task, str):
            from core.data.tasks import get_task  # a preset name or task file: stored as the full dict

            object.__setattr__(self, "task", get_task(self.task).to_dict())
        if self.task is not None and not isinstance(self.task, dict):
            raise InputError("run config: task must be a task name or a task definition (mapping)")
        if self.mode not in MODES:
            raise InputError(f"run config: mode must be one of {MODES}, got {self.mode!r}")
        if self.backbone is None:
            object.__setattr__(self, "backbone", default_backbone(self.mode))
        for key, value in _MODE_DEFAULTS[self.mode].items():
            if getattr(self, key) is None:
                object.__setattr__(self, key, value)
        if self.framing is None:
            from core.models.preprocess import DEFAULT_FRAMING

            object.__setattr__(self, "framing", DEFAULT_FRAMING)
        if self.head_fit is None:
            object.__setattr__(self, "head_fit", "logistic" if self.mode == "features" and self.head == "linear"
                               else "adam")
        if self.views is None:
            object.__setattr__(self, "views", DEFAULT_VIEWS if self.head_fit == "logistic" else 0)
        if self.val_metric == "auto" and self.task:
            kind = self.task.get("kind")
            object.__setattr__(self, "val_metric", "kappa" if kind == "ordinal" else "auroc")
        self._check()

    def _check(self) -> None:
        def bad(name: str, problem: str):
            raise InputError(f"run config: {name} {problem}")

        from core.metrics.model_operating_point import OPERATING_RULES
        from core.models.preprocess import FRAMINGS

        choices = {"head": HEADS, "head_fit": HEAD_FITS, "framing": tuple(FRAMINGS),
                   "operating_rule": tuple(OPERATING_RULES), "balance": BALANCE, "val_metric": VAL_METRICS, "amp": AMP_MODES,
                   "bn": BN_MODES, "optimizer": OPTIMIZERS, "schedule": SCHEDULES}
        for name, allowed in choices.items():
            if getattr(self, name) not in allowed:
                bad(name, f"must be one of {allowed}, got {getattr(self, name)!r}")
        if not isinstance(self.data, str):
            bad("data", "must be a path string")
        for name in ("epochs", "batch_size", "accumulate"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                bad(name, f"must be a whole number >= 1, got {value!r}")
        for name in ("lr", "weight_decay", "warmup_epochs", "drop_rate"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
                bad(name, f"must be a non-negative number, got {value!r}")
        if self.lr <= 0:
            bad("lr", "must be > 0")
        if self.mode == "finetune" and _is_ensemble(self.backbone):
            bad("backbone", f"{self.backbone!r} is a frozen feature ensemble: use mode 'features', or fine-tune "
                            "one of its members")
        if self.head_fit == "logistic" and (self.mode != "features" or self.head != "linear"):
            bad("head_fit", "'logistic' fits a linear head on cached features: use mode 'features' and head "
                            "'linear', or head_fit 'adam'")
        if not isinstance(self.views, int) or isinstance(self.views, bool) or not 0 <= self.views <= MAX_VIEWS:
            bad("views", f"must be a whole number from 0 to {MAX_VIEWS}, got {self.views!r}")
        if self.views and self.mode != "features":
            bad("views", "acquisition views are cached features: features mode only (fine-tuning augments live)")
        if self.target_sensitivity is not None and not 0 < float(self.target_sensitivity) < 1:
            bad("target_sensitivity", f"must be between 0 and 1, got {self.target_sensitivity!r}")
        if self.per_class is not None and self.fraction is not None:
            bad("per_class/fraction", "give one of them, not both")
        if self.per_class is not None and (not isinstance(self.per_class, int) or self.per_class < 1):
            bad("per_class", f"must be a whole number >= 1, got {self.per_class!r}")
        if self.fraction is not None and not (0 < float(self.fraction) <= 1):
            bad("fraction", f"must be in (0, 1], got {self.fraction!r}")
        if not (0 <= float(self.val_fraction) < 1):
            bad("val_fraction", f"must be in [0, 1), got {self.val_fraction!r}")
        if self.image_size is not None and (not isinstance(self.image_size, int) or self.image_size < 8):
            bad("image_size", f"must be a whole number of pixels >= 8, got {self.image_size!r}")
        if not (self.unfreeze == "all" or (isinstance(self.unfreeze, int) and self.unfreeze >= 0)):
            bad("unfreeze", f"must be 'all' or a number of stages >= 0, got {self.unfreeze!r}")
        if self.patience is not None and (not isinstance(self.patience, int) or self.patience < 0):
            bad("patience", f"must be a whole number >= 0, got {self.patience!r}")
        if self.augment is not None and not isinstance(self.augment, dict):
            bad("augment", "must be a mapping of augmentation settings")
        if self.binary is not None:
            ok = (isinstance(self.binary, str) and self.binary.strip()) or (
                isinstance(self.binary, dict) and self.binary.get("positive"))
            if not ok:
                bad("binary", "must be a binary view name, 'POS:NEG', or {'positive': [classes], "
                              "'negative': [classes, or empty for the rest]}")
        if not (self.device == "auto" or self.device == "cpu" or self.device.startswith("cuda")):
            bad("device", f"must be 'auto', 'cpu' or 'cuda[:N]', got {self.device!r}")
        if self.version != CONFIG_VERSION:
            bad("version", f"{self.version!r} is not understood by this program (expects {CONFIG_VERSION})")

    # -- conversions -----------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def replace(self, **changes: Any) -> "RunConfig":
        return dataclasses.replace(self, **changes)

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str = "run config") -> "RunConfig":
        if not isinstance(data, dict):
            raise InputError(f"{source}: must be a JSON object")
        known = {f.name for f in dataclasses.fields(cls)}
        if data.get("version") == 1:
            data = {**_V1_DEFAULTS, **data, "version": CONFIG_VERSION}
        unknown = sorted(set(data) - known)
        if unknown:
            raise InputError(f"{source}: unknown field(s) {unknown}; known fields: {sorted(known)}")
        try:
            return cls(**data)
        except TypeError as exc:
            raise InputError(f"{source}: {exc}") from None

    def save(self, path: str | Path) -> Path:
        """Write as JSON atomically (a reader never sees half a file)."""
        path = Path(path)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(json.dumps(self.to_dict(), indent=2, sort_keys=True))
        tmp.replace(path)
        return path

    @classmethod
    def load(cls, path: str | Path) -> "RunConfig":
        path = Path(path)
        if path.is_dir():
            path = path / "config.json"
        try:
            data = json.loads(path.read_text())
        except OSError as exc:
            raise InputError(f"{path}: cannot read run config ({exc.strerror})") from None
        except ValueError as exc:
            raise InputError(f"{path}: not valid JSON: {exc}") from None
        return cls.from_dict(data, source=str(path))


def default_backbone(mode: str = "features") -> str:
    """The backbone a run of this mode gets when none is named (Lite0 where the ensemble's weights are missing)."""
    from core.models.registry import list_backbones

    if mode == "features" and FEATURES_BACKBONE in {s.name for s in list_backbones()}:
        return FEATURES_BACKBONE
    return FINETUNE_BACKBONE


def _is_ensemble(backbone: str) -> bool:
    from core.models.registry import get_backbone

    try:
        return bool(get_backbone(backbone).members)
    except InputError:
        return False  # an unknown name is reported where the model is built, with the list of choices


def as_config(config: "RunConfig | dict") -> RunConfig:
    """Accept a RunConfig or a plain mapping (the dashboard's form values)."""
    if isinstance(config, RunConfig):
        return config
    return RunConfig.from_dict(dict(config))
