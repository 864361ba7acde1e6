"""A widget interaction in AppTest rerun the way the browser reruns it: only the fragment (`st.fragment`) that drew
the widget, or the whole app when the widget sits in none. AppTest itself always reruns the whole app, which hides
what a fragment saves; tests/test_rerun_caching.py and benchmarks/bench_rerun.py use this instead.

Built on AppTest's own runner (streamlit 1.67): the fragment ids come from the deltas of the last full run, the
rerun request carries them as the browser's does (`RerunData.fragment_id_queue`)."""

from __future__ import annotations

import dataclasses
from contextlib import contextmanager
from typing import Iterator

from streamlit.testing.v1 import AppTest
from streamlit.testing.v1.element_tree import ElementTree
from streamlit.testing.v1 import element_tree, local_script_runner
from streamlit.testing.v1.local_script_runner import LocalScriptRunner


@dataclasses.dataclass
class _Capture:
    fragment_ids: list[str] | None = None  # the rerun's fragments (None: the whole app)
    widget_fragments: dict[str, str] = dataclasses.field(default_factory=dict)  # widget id -> fragment id


@contextmanager
def _capturing(capture: _Capture) -> Iterator[None]:
    """While open, AppTest's runs ask for `capture.fragment_ids` (every rerun request the runner builds, its first
    included, carries them, as the browser's request does) and record which fragment drew each widget (a delta's
    fragment_id; the element proto's id is the widget id)."""
    rerun_data, run = local_script_runner.RerunData, LocalScriptRunner.run

    def scoped_rerun_data(**fields):
        if capture.fragment_ids:
            fields.setdefault("fragment_id_queue", list(capture.fragment_ids))
        return rerun_data(**fields)

    def run_and_record(self, *args, **kwargs):
        tree = run(self, *args, **kwargs)
        for msg in self.forward_msgs():
            if msg.WhichOneof("type") != "delta" or msg.delta.WhichOneof("type") != "new_element":
                continue
            element = msg.delta.new_element
            kind = element.WhichOneof("type")
            widget_id = getattr(getattr(element, kind), "id", "") if kind else ""
            if widget_id and msg.delta.fragment_id:
                capture.widget_fragments[widget_id] = msg.delta.fragment_id
        return tree

    def on_the_page(node):
        # A widget whose fragment reran without it (a key naming the case just answered) is gone from the browser's
        # page; the kept page tree still lists it, and the browser sends no state for it.
        try:
            return widget_state(node)
        except KeyError:
            return None

    widget_state = element_tree.get_widget_state
    local_script_runner.RerunData, LocalScriptRunner.run = scoped_rerun_data, run_and_record
    element_tree.get_widget_state = on_the_page
    try:
        yield
    finally:
        local_script_runner.RerunData, LocalScriptRunner.run = rerun_data, run
        element_tree.get_widget_state = widget_state


class BrowserReruns:
    """An AppTest driven like a browser: `open()` runs the whole app (recording which fragment drew which widget);
    `interact(widget)` reruns what the browser would rerun after that widget changed and returns the elements that
    run drew. `at` keeps the whole page's tree, so later interactions find every widget."""

    def __init__(self, at: AppTest):
        self.at = at
        self._capture = _Capture()

    def full_run(self) -> ElementTree:
        self._capture.fragment_ids = None
        with _capturing(self._capture):
            self.at.run()
        return self.at._tree

    def fragment_of(self, widget) -> str | None:
        """The id of the fragment that drew `widget` in the last full run (None: drawn by the app itself)."""
        return self._capture.widget_fragments.get(widget.id)

    def interact(self, widget) -> ElementTree:
        """Rerun after `widget`'s value was set (`set_value`, `input`...): its fragment only, else the whole app."""
        fragment = self.fragment_of(widget)
        if fragment is None:
            return self.full_run()
        page = self.at._tree
        self._capture.fragment_ids = [fragment]
        try:
            with _capturing(self._capture):
                self.at._run(page.get_widget_states())
        finally:
            self._capture.fragment_ids = None
        drawn, self.at._tree = self.at._tree, page  # the browser keeps the rest of the page as it was
        for node in page:  # ... and sends a click once: the kept buttons are no longer pressed
            if isinstance(node, element_tree.Button):
                node._value = False
        if drawn.exception:
            raise AssertionError([e.value for e in drawn.exception])
        return drawn
