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
