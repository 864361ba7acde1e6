"""Server paths as a user sees them: an admin (who chooses workspace and data folders) sees the full path, everyone
else only the folder's or file's name (issue 22: server paths showed on the first-start page, Home and the test-set
source column). Shown as plain text (st.code / a table cell / plain()), never as markdown."""

from __future__ import annotations

from pathlib import PurePath

from core.store.access import Actor, allowed


def shown_path(path, actor: Actor | None) -> str:
    """`path` in full for an admin (the role that may choose folders on the server), else its last part only."""
    text = str(path or "")
    if not text or allowed(actor, "choose_workspace"):
        return text
    return PurePath(text).name or text


def shown_paths(values, actor: Actor | None) -> list[str]:
    """shown_path of each value (a table's source column)."""
    return [shown_path(v, actor) for v in values]


def shown_in(text: str, path, actor: Actor | None) -> str:
    """`text` (a core message) with `path` (and the folder it resolves to) shown as shown_path shows it: a
    server path is not told to someone who is not an admin, nor to anyone before sign-in."""
    from pathlib import Path

    text = str(text)
    if not path or allowed(actor, "choose_workspace"):
        return text
    for full in sorted({str(path), str(Path(path).expanduser().resolve())}, key=len, reverse=True):
        text = text.replace(full, shown_path(full, actor))
    return text
