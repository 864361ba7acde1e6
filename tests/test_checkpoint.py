"""Checkpoint IO: safetensors + model card round trips, folder layouts, and clear errors for broken checkpoints."""

from __future__ import annotations

import json

import pytest
import torch

from core.errors import InputError
from core.models import (
    attach_head,
    create_head,
    create_model,
    load_checkpoint,
    preprocess_config,
    save_checkpoint,
)

CARD = {"task": {"name": "oct-kermany"}, "classes": ["CNV", "DME", "DRUSEN", "NORMAL"], "training": {"epochs": 2}}


@pytest.fixture
def saved(tmp_path):
    """A run folder with checkpoint/ holding an mlp-head test_efficientnet trained at 48 px."""
    torch.manual_seed(0)
    model = create_model("test_efficientnet", 4, head="mlp", hidden=8, drop_rate=0.2).eval()
    card = {**CARD, "preprocessing": preprocess_config(model, image_size=48)}
    checkpoint_dir = save_checkpoint(model, tmp_path / "run" / "checkpoint", card)
    return model, checkpoint_dir


@pytest.mark.parametrize("where", ["run", "checkpoint", "file"])
def test_round_trip_gives_identical_outputs(saved, where):
    model, checkpoint_dir = saved
    path = {"run": checkpoint_dir.parent, "checkpoint": checkpoint_dir,
            "file": checkpoint_dir / "model.safetensors"}[where]
    loaded, card = load_checkpoint(path)
    images = torch.randn(2, 3, 48, 48)
    with torch.no_grad():
        assert torch.equal(loaded(images), model(images))
    assert not loaded.training and loaded.weights_source.startswith("checkpoint sha256:")
    assert card["classes"] == CARD["classes"] and card["training"] == {"epochs": 2}
    assert (card["backbone"], card["num_classes"], card["head"], card["hidden"]) == ("test_efficientnet", 4, "mlp", 8)
    assert card["format_version"] == 1 and card["created"] and card["weights_source"] == "random init (test model)"
    # The model carries the preprocessing it was trained with.
    assert preprocess_config(loaded)["input_size"] == (3, 48, 48)


def test_features_mode_model_round_trips(tmp_path):
    backbone = create_model("test_resnet", 0).eval()
    full = attach_head(backbone, create_head(backbone.num_features, 3, "linear")).eval()
    loaded, card = load_checkpoint(save_checkpoint(full, tmp_path, {"classes": ["A", "B", "C"]}))
    images = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(loaded(images), full(images))
    assert card["head"] == "linear" and card["preprocessing"]["input_size"] == [3, 160, 160]


def test_saving_again_replaces_files_and_leaves_no_temporaries(saved):
    model, checkpoint_dir = saved
    save_checkpoint(model, checkpoint_dir, CARD)
    assert sorted(p.name for p in checkpoint_dir.iterdir()) == ["model.safetensors", "model_card.json"]


def test_missing_paths_and_files(tmp_path, saved):
    _, checkpoint_dir = saved
    with pytest.raises(InputError, match="does not exist"):
        load_checkpoint(tmp_path / "nowhere")
    with pytest.raises(InputError, match="no model.safetensors"):
        load_checkpoint(tmp_path / "run" / "..")
    (checkpoint_dir / "model_card.json").unlink()
    with pytest.raises(InputError, match="model card is missing"):
        load_checkpoint(checkpoint_dir)
    pickled = tmp_path / "model.pth"
    torch.save({}, pickled)
    with pytest.raises(InputError, match="is a .safetensors file"):
        load_checkpoint(pickled)


def test_corrupt_weights_or_card(saved):
    _, checkpoint_dir = saved
    card_path, weights_path = checkpoint_dir / "model_card.json", checkpoint_dir / "model.safetensors"
    good_card = card_path.read_text()
    card_path.write_text("{ not json")
    with pytest.raises(InputError, match="not a readable JSON model card"):
        load_checkpoint(checkpoint_dir)
    card_path.write_text(json.dumps({"backbone": "test_efficientnet"}))
    with pytest.raises(InputError, match="lacks num_classes, head"):
        load_checkpoint(checkpoint_dir)
    card_path.write_text(good_card)
    weights_path.write_bytes(weights_path.read_bytes()[:1000])
    with pytest.raises(InputError, match="not a readable safetensors file"):
        load_checkpoint(checkpoint_dir)


def test_card_that_does_not_match_the_weights(saved):
    _, checkpoint_dir = saved
    card_path = checkpoint_dir / "model_card.json"
    card = json.loads(card_path.read_text())
    card_path.write_text(json.dumps({**card, "num_classes": 3}))
    with pytest.raises(InputError, match=r"'classifier.3.weight' is \(4, 8\), expected \(3, 8\)"):
        load_checkpoint(checkpoint_dir)
    card_path.write_text(json.dumps({**card, "head": "linear"}))
    with pytest.raises(InputError, match="missing.*unexpected"):
        load_checkpoint(checkpoint_dir)
    card_path.write_text(json.dumps({**card, "backbone": "alexnet"}))
    with pytest.raises(InputError, match="unknown backbone 'alexnet'"):
        load_checkpoint(checkpoint_dir)
    card_path.write_text(json.dumps({**card, "format_version": 99}))
    with pytest.raises(InputError, match="newer than this software"):
        load_checkpoint(checkpoint_dir)


def test_card_sizes_are_bounded_before_the_model_is_built(saved, monkeypatch):
    """A card claiming 1e9 classes (a terabyte of head weights), a huge hidden width or input size is refused with
    a message naming the card and the value, before create_model allocates anything."""
    from core.models import checkpoint

    _, checkpoint_dir = saved
    card_path = checkpoint_dir / "model_card.json"
    card = json.loads(card_path.read_text())

    def never(*args, **kwargs):
        raise AssertionError(f"create_model called with {args}")

    monkeypatch.setattr(checkpoint, "create_model", never)
    for changed, message in (
            ({"num_classes": 1e9}, r"model_card\.json: num_classes of the model card is 1000000000\.0, outside "
                                   r"0\.\.1,000"),
            ({"hidden": 10**9}, r"model_card\.json: hidden of the model card is 1000000000, outside 1\.\.65,536"),
            ({"num_classes": 900}, r"model_card\.json: num_classes of the model card is 900, but no tensor of the "
                                   r"checkpoint has a dimension above \d+"),
            ({"hidden": 60_000}, r"model_card\.json: hidden of the model card is 60000, but no tensor"),
            ({"preprocessing": {**card["preprocessing"], "input_size": [3, 100_000, 100_000]}},
             r"model_card\.json: preprocessing input_size of the model card is \[3, 100000, 100000\]: each side "
             r"must lie in 1\.\.4096"),
            ({"num_classes": 2.5}, r"num_classes of the model card must be a whole number, not 2\.5")):
        card_path.write_text(json.dumps({**card, **changed}))
        with pytest.raises(InputError, match=message):
            load_checkpoint(checkpoint_dir)


def test_card_class_limit_is_the_tasks_limit():
    from core.data.tasks import MAX_CLASSES
    from core.models import checkpoint

    assert checkpoint.MAX_CLASSES == MAX_CLASSES


def test_pickled_objects_are_refused_without_pytorchs_advice(tmp_path):
    """torch.load's refusal text advises weights_only=False "if you trust the source": users get our message."""
    from core.models.weights import read_weights_file

    torch.save(torch.nn.Linear(2, 2), tmp_path / "whole-model.pth")  # a pickled module, not a state dict
    with pytest.raises(InputError) as caught:
        read_weights_file(tmp_path / "whole-model.pth")
    text = str(caught.value)
    assert "weights file whole-model.pth could not be read as weights: it holds pickled Python objects" in text
    assert "torch.save(model.state_dict(), path)" in text
    assert "weights_only" not in text and "trust" not in text and "WeightsUnpickler" not in text


def test_resume_state_with_pickled_objects_is_refused_plainly(tmp_path):
    from safetensors.torch import save_file

    from core.train.resume import RESUME_DIR, load_resume_state

    model = torch.nn.Linear(2, 2)
    folder = tmp_path / RESUME_DIR
    folder.mkdir()
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, folder / "model.safetensors")
    torch.save({"optimizer": torch.optim.SGD(model.parameters(), lr=0.1)}, folder / "state.pt")
    with pytest.raises(InputError) as caught:
        load_resume_state(tmp_path, model, None, None, None, None)
    text = str(caught.value)
    assert text.startswith("resume state state.pt could not be read as weights: it holds pickled Python objects")
    assert "weights_only" not in text and "trust" not in text
