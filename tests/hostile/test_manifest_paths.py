"""A manifest names files only inside the folder it came from (or under a data root of the server), and an upload
is not registered a second time as a server folder (issue 21, item 4)."""

from __future__ import annotations

import re

import pytest

from core.data.ingest import ingest_upload, load_registered, register_folder
from core.errors import InputError
from core.store.access import ADMIN, RESEARCHER, AccessDenied, Actor
from tests._data_files import write_image
from tests.hostile.corpus import cases

RESEARCHER_ACTOR = Actor("rosa", RESEARCHER)


@pytest.mark.parametrize("case", cases("manifest-reach"), ids=str)
def test_uploaded_manifest_reaching_out_is_refused_on_upload_and_on_every_read(case, workspace, tmp_path):
    zip_path = case.build(tmp_path)
    write_image(workspace.uploads_dir / "x.png", size=(16, 16), seed=5)  # where ../../x.png lands from the upload
    with pytest.raises(InputError) as err:
        ingest_upload(workspace, zip_path.name, zip_path.read_bytes(), actor=RESEARCHER_ACTOR)
    assert re.search(case.expect, str(err.value)), str(err.value)
    assert workspace.list_datasets() == []
    added = ingest_upload(workspace, zip_path.name, zip_path.read_bytes(), skip_bad=True, actor=RESEARCHER_ACTOR)
    assert sorted(added.dataset.table["image_id"]) == ["a.png", "b.png"]
    # Every page, run and report reads the registered upload again from its folder: the row stays refused there.
    again = load_registered(workspace, added.dataset_id)
    assert sorted(again.table["image_id"]) == ["a.png", "b.png"]
    refused = [p for p in again.problems if ", line 4: " in p]
    assert len(refused) == 1 and re.search(r"line 4: image path '.*' points outside the dataset folder; refused$",
                                           refused[0]), again.problems


def test_an_upload_is_not_registered_again_as_a_server_folder(workspace, tmp_path):
    zip_path = cases("manifest-reach")[-1].build(tmp_path)
    added = ingest_upload(workspace, zip_path.name, zip_path.read_bytes(), skip_bad=True, actor=RESEARCHER_ACTOR)
    source = added.record["source"]
    for actor in (RESEARCHER_ACTOR, Actor("boss", ADMIN)):
        with pytest.raises(AccessDenied, match=r"folder .*/uploads/upload-[^/]+/data: is inside the workspace's "
                                               r"uploads \(.*\); uploaded data is added through the upload form, "
                                               r"not registered again as a server folder"):
            register_folder(workspace, source, skip_bad=True, actor=actor)
        with pytest.raises(AccessDenied, match=r"holds the workspace's uploads"):
            register_folder(workspace, workspace.root, skip_bad=True, actor=actor)
    assert [d["id"] for d in workspace.list_datasets()] == [added.dataset_id]
    # The server's shell may register any folder, yet the upload's manifest still names nothing outside it.
    shell = register_folder(workspace, source, skip_bad=True)
    assert sorted(shell.dataset.table["image_id"]) == ["a.png", "b.png"]
    assert any("line 4: image path" in p and "points outside the dataset folder" in p for p in shell.dataset.problems)
