"""Command line: `python -m core export --run RUN --format onnx --out DIR` and
`python -m core import-model --model FILE.onnx|FILE.pt --card CARD.json|.toml [--name NAME]`."""

from __future__ import annotations

from pathlib import Path

from core.data.readers.registry import data_argument_help  # torch-free: `import-model --help` stays quick


def register(subparsers) -> None:
    e = subparsers.add_parser(
        "export", help="export a run's model to ONNX or TorchScript with the card that imports it",
        description="Write DIR/model.onnx (or DIR/model.torchscript.pt) and DIR/card.json: the whole model "
                    "(normalised images in, probabilities out) and everything import-model needs. The export's "
                    "probabilities are compared with the PyTorch model's on the test images first; when any differs "
                    "by more than 1e-4 nothing is written. Prints the two files and the largest difference.")
    e.add_argument("--run", required=True, help="run id, run folder or checkpoint of a run trained here")
    e.add_argument("--format", choices=("onnx", "torchscript"), default="onnx",
                   help="onnx (default: model.onnx, run by ONNX Runtime) or torchscript (model.torchscript.pt)")
    e.add_argument("--out", required=True, type=Path, metavar="DIR",
                   help="folder to write the model file and card.json into (made if missing)")
    e.add_argument("--data", metavar="TEST_SET",
                   help="test images to check the export on: " + data_argument_help("a dataset id") +
                        " (default: the newest test set the run has predictions for)")
    e.set_defaults(func=run_export)

    i = subparsers.add_parser(
        "import-model", help="register an ONNX or TorchScript model trained elsewhere as a run",
        description="Register a model trained elsewhere as a run, described by a model card (JSON or TOML). "
                    "The card needs: classes (the model's outputs, in order) or task (a task name, e.g. "
                    "oct-kermany), input_size [H, W], mean and std (per channel, on 0-1 pixels), output "
                    "(probabilities, logits or sigmoid-logits); optional: channels (1 or 3, default 3), framing "
                    "(squash (default), letterbox, center), interpolation (default bilinear), crop_pct, name, "
                    "kind. The model's input and output shapes are checked against the card; a pickle (torch.save "
                    "file) is refused without being loaded. The card.json that `export` writes is such a card. "
                    "Prints the new run's id on the last line.")
    i.add_argument("--model", required=True, type=Path, metavar="FILE.onnx|FILE.pt",
                   help="an ONNX model (.onnx) or a TorchScript archive written by torch.jit.save (.pt, .pth, .ts)")
    i.add_argument("--card", required=True, type=Path, metavar="CARD.json|.toml", help="the model card")
    i.add_argument("--name", help="the run's name (default: the card's name or the file's)")
    i.set_defaults(func=run_import)


def run_export(args) -> int:
    from core.infer.model_exchange import export_run
    from core.store import Workspace

    result = export_run(args.run, args.out, Workspace.open(), fmt=args.format, data=args.data)
    print(f"{result.model_path}\n{result.card_path}")
    print(f"checked on {result.images_checked} test images: largest difference from the PyTorch model's "
          f"probabilities {result.max_abs_difference:.2e}")
    return 0


def run_import(args) -> int:
    from core.infer.model_exchange import import_model
    from core.store import Workspace

    imported = import_model(args.model.expanduser(), args.card.expanduser(), Workspace.open(), name=args.name)
    record = imported.card["external"]
    print(f"imported {record['format']} model {record['imported_from']} (sha256 {record['sha256'][:16]}) as a run")
    print(imported.run_id)
    return 0
