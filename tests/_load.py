"""The load driver: the real server, and concurrent headless-Chromium sessions of readers grading a study and
researchers moving the threshold and editing penalties, all measured from the browser and checked in the registry.

Used by tests/test_load.py (short form, asserts storage only) and benchmarks/bench_load.py (full form, prints
figures). Every step by which a session identifies itself is in `sign_in`, and nowhere else.

What is measured:
- click to stored: from the click on a class button to the `answered` time the server wrote in the answers row
  (both clocks are this machine's; the row is polled for in SQLite);
- page rerun: from the browser sending `rerun_script` to Streamlit's `script_finished` for it, read off the
  websocket (an interrupted rerun counts until the run that replaced it finished);
- acknowledged: the page's progress line counted the answer ("k of n images graded").
"""

from __future__ import annotations

import asyncio
import os
import random
import re
import sqlite3
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from core.data.tasks import Task
from tests._server import CHROMIUM_ARGS, chromium_path, running_server

TRACE = bool(os.environ.get("LOAD_TRACE"))  # print every interaction to stderr
TIMEOUT_MS = 120_000  # a rerun on a machine shared with other work can be slow; a step failing after this is an error


@dataclass(frozen=True)
class LoadPlan:
    readers: int
    researchers: int
    duration_s: float
    codes_per_reader: int = 8  # a reader who finished the study signs in as the next code of their slot


@dataclass
class Answer:
    reader_id: str
    image_id: str
    label: str
    clicked: float  # time.time() just before the click
    stored: float | None = None  # the row's `answered` time, once polled
    acknowledged: float | None = None  # when the page's progress line counted it


@dataclass
class LoadResult:
    plan: LoadPlan
    study_id: str
    elapsed_s: float
    answers: list[Answer]
    reruns: dict[str, list[float]]  # kind of interaction -> rerun seconds
    researcher_steps: dict[str, int]
    page_errors: list[str]
    # from the registry after the run
    missing: list[Answer] = field(default_factory=list)  # acknowledged, but no row or another label
    duplicated: list[tuple] = field(default_factory=list)  # (reader, image) pairs stored more than once
    unacknowledged_rows: int = 0  # rows of this run's readers the pages did not acknowledge (a click cut off)

    @property
    def acknowledged(self) -> list[Answer]:
        return [a for a in self.answers if a.acknowledged is not None]

    def stored_per_second(self) -> float:
        # A run that failed in its warm-up has no window (0 s): report 0, so the summary shows the failure itself.
        return sum(a.stored is not None for a in self.answers) / self.elapsed_s if self.elapsed_s > 0 else 0.0

    def click_to_stored_p95(self) -> float:
        return _p95([a.stored - a.clicked for a in self.answers if a.stored is not None])

    def rerun_p95(self, kinds: tuple[str, ...] | None = None) -> float:
        return _p95([s for kind, values in self.reruns.items() if kinds is None or kind in kinds for s in values])

    def summary(self) -> str:
        kinds = sorted(self.reruns)
        lines = [
            f"{self.plan.readers} readers + {self.plan.researchers} researchers for {self.elapsed_s:.0f} s",
            f"answers stored: {sum(a.stored is not None for a in self.answers)} "
            f"({self.stored_per_second():.2f}/s), acknowledged in the page: {len(self.acknowledged)}",
            f"click to stored answer p95: {self.click_to_stored_p95():.3f} s",
            f"page rerun p95, all interactions: {self.rerun_p95():.3f} s "
            f"({sum(len(v) for v in self.reruns.values())} reruns)",
            *(f"  {kind}: p95 {self.rerun_p95((kind,)):.3f} s, median {_median(self.reruns[kind]):.3f} s "
              f"over {len(self.reruns[kind])}" for kind in kinds),
            f"researcher steps: {self.researcher_steps}",
            f"acknowledged answers missing from the registry: {len(self.missing)}; stored twice: "
            f"{len(self.duplicated)}; stored but not acknowledged: {self.unacknowledged_rows}",
            f"page errors: {len(self.page_errors)}",
        ]
        return "\n".join(lines)


def _p95(values) -> float:
    return float(np.percentile(values, 95)) if len(values) else float("nan")


def _median(values) -> float:
    return float(np.median(values)) if len(values) else float("nan")


# -- the study and its readers, made with the product's own functions ---------------------------------
def researcher_name(n: int) -> str:
    return f"load-researcher-{n + 1}"


def prepare_study(workspace: Path, plan: LoadPlan) -> tuple[str, list[list[str]], Task]:
    """Seed the workspace (tests.seed), create a study over its whole test set and join every reader code.
    Returns (study id, reader codes per reader slot, the study's task)."""
    from core.readers import create_study, join_study
    from core.store import Workspace
    from tests.seed import seed_workspace

    from core.data.ingest import load_registered

    seeded = seed_workspace(workspace)
    ws = Workspace.open(workspace)
    test_set = load_registered(ws, seeded["test_set_id"])
    study_id = create_study(ws, seeded["test_set_id"], test_set, test_set.task, name="load test")
    codes = [[f"load-r{slot + 1}-{n + 1}" for n in range(plan.codes_per_reader)] for slot in range(plan.readers)]
    from core.store.access import READER, RESEARCHER, SHELL, set_user

    for code in (c for slot in codes for c in slot):
        set_user(ws, code, READER, PASSWORD, actor=SHELL)
        join_study(ws, study_id, code)
    for n in range(plan.researchers):
        set_user(ws, researcher_name(n), RESEARCHER, PASSWORD, actor=SHELL)
    return study_id, codes, test_set.task


class Session:
    """One browser context (its own Streamlit session) with its reruns timed off the websocket."""

    def __init__(self, page, name: str, reruns: dict[str, list[float]], errors: list[str]):
        self.page, self.name = page, name
        self._reruns, self._errors = reruns, errors
        self._requests = 0  # rerun_script messages sent
        self._pending: float | None = None  # when the oldest unfinished rerun was asked for
        self._finished = asyncio.Event()
        self._finished.set()
        self.kind = "page load"
        self.token: str | None = None  # the sign-in token (sign_in sets it)
        page.on("websocket", self._watch)

    def _watch(self, ws) -> None:
        from streamlit.proto.BackMsg_pb2 import BackMsg
        from streamlit.proto.ForwardMsg_pb2 import ForwardMsg

        def sent(payload) -> None:
            if isinstance(payload, bytes) and BackMsg.FromString(payload).WhichOneof("type") == "rerun_script":
                self._requests += 1
                if self._pending is None:
                    self._pending = time.perf_counter()
                self._finished.clear()

        def received(payload) -> None:
            if not isinstance(payload, bytes):
                return
            msg = ForwardMsg.FromString(payload)
            if msg.WhichOneof("type") != "script_finished" or \
                    msg.script_finished == ForwardMsg.FINISHED_EARLY_FOR_RERUN:
                return  # an interrupted rerun: the one that replaced it is still to come
            if self._pending is not None:
                self._reruns.setdefault(self.kind, []).append(time.perf_counter() - self._pending)
                self._pending = None
            self._finished.set()

        ws.on("framesent", sent)
        ws.on("framereceived", received)

    async def interact(self, kind: str, action, request_within_s: float = 3.0) -> None:
        """Run `action` (a click, a key press, a page load) as an interaction of `kind` and wait for the rerun it
        asked for; an action that asks for none within `request_within_s` (a slider already at its end) is done."""
        self.kind = kind
        before = self._requests
        started = time.perf_counter()
        await action()
        deadline = time.perf_counter() + request_within_s
        while self._requests == before and self._finished.is_set() and time.perf_counter() < deadline:
            await asyncio.sleep(0.02)
        await asyncio.wait_for(self._finished.wait(), TIMEOUT_MS / 1000)
        if TRACE:
            print(f"{time.strftime('%H:%M:%S')} {self.name}: {kind} {time.perf_counter() - started:.2f} s "
                  f"({self._requests - before} rerun request(s))", file=sys.stderr, flush=True)
        errors = self.page.locator("[data-testid='stException']")
        if await errors.count():
            self._errors.append(f"{self.name} ({kind}): {(await errors.first.inner_text())[:500]}")

    async def open(self, url: str) -> None:
        """A fresh page load (a new Streamlit session for this browser tab), signed in by the URL's token."""
        if self.token:
            from dashboard.state import SESSION_PARAM

            url = f"{url}{'&' if '?' in url else '?'}{SESSION_PARAM}={self.token}"

        async def go():
            await self.page.goto(url, wait_until="domcontentloaded", timeout=TIMEOUT_MS)
            await self.page.wait_for_selector("[data-testid='stMain']", timeout=TIMEOUT_MS)
        await self.interact("page load", go, request_within_s=30)

    async def switch_page(self, path: str) -> None:
        """Go to another page through the sidebar (the same Streamlit session, as a user does)."""
        link = self.page.locator(f"[data-testid='stSidebarNav'] a[href$='/{path}']")
        await self.interact("page switch", link.click)


# -- signing in: the one function for it ------------------------------------------------------------------
PASSWORD = "load-test-pw"  # every load-test user's password (prepare_study creates the users)


async def sign_in(session: Session, url: str, role: str, identity: str | None = None) -> None:
    """Every step by which a browser session identifies itself: the sign-in form with the user's name and password
    (prepare_study made the users), then the token the app puts in the URL rides along on later page loads. A reader
    then starts (or resumes) their study on the Reader study page, where they read under their own name."""
    session.token = None
    await session.open(url)
    form = session.page.locator("[data-testid='stForm']")
    await form.get_by_label("User name", exact=True).fill(identity or session.name)
    await form.get_by_label("Password", exact=True).fill(PASSWORD)
    await session.interact("sign-in", lambda: form.get_by_role("button", name="Sign in").click())
    await session.page.get_by_text("Signed in as").first.wait_for(timeout=TIMEOUT_MS)
    session.token = _url_token(session.page.url)
    if role != "reader":
        return
    # prepare_study joined every code: a signed-in reader with a study under way lands in it (the grading screen's
    # progress bar); one who has not joined yet starts from the Reader study page's start screen.
    grading, start = session.page.locator("[data-testid='stProgress']"), session.page.locator(".st-key-rs_join button")
    await grading.or_(start).first.wait_for(timeout=TIMEOUT_MS)
    if not await grading.count():
        await session.page.get_by_text(f"Reading as {identity}").first.wait_for(timeout=TIMEOUT_MS)
        await session.interact("sign-in", start.click)
        await grading.wait_for(timeout=TIMEOUT_MS)


def _url_token(page_url: str) -> str | None:
    from urllib.parse import parse_qs, urlparse

    from dashboard.state import SESSION_PARAM

    return (parse_qs(urlparse(page_url).query).get(SESSION_PARAM) or [None])[0]


async def sign_out_reader(session: Session) -> None:
    await session.interact("sign-in", lambda: session.page.locator(".st-key-sign_out button").click())
    session.token = None


# -- the two kinds of user ----------------------------------------------------------------------------------
_PROGRESS = re.compile(r"(\d+) of (\d+) images graded")


async def _progress(page) -> tuple[int, int]:
    text = await page.locator("[data-testid='stProgress']").inner_text(timeout=TIMEOUT_MS)
    found = _PROGRESS.search(text)
    if not found:
        raise AssertionError(f"no progress line in {text!r}")
    return int(found[1]), int(found[2])


def _next_image(workspace: Path, study_id: str, reader_id: str) -> str | None:
    from core.readers import next_item
    from core.store import Workspace

    item = next_item(Workspace.open(workspace), study_id, reader_id)
    return None if item is None else item.image_id


def _stored_at(db: Path, study_id: str, reader_id: str, image_id: str, label: str, until: list[float]) -> float | None:
    """Poll SQLite for the answer row; its `answered` time once it holds `label`, None if it has not come by
    until[0] (the caller shortens that once the click's rerun finished: the answer is stored before it ends)."""
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=30)
    try:
        while time.time() < until[0]:
            row = con.execute("SELECT label, answered FROM answers WHERE study_id=? AND reader_id=? AND image_id=?",
                              (study_id, reader_id, image_id)).fetchone()
            if row is not None and row[0] == label:
                return float(row[1])
            time.sleep(0.01)
        return None
    finally:
        con.close()


async def reader(session: Session, url: str, workspace: Path, db: Path, study_id: str, codes: list[str],
                 classes: tuple[str, ...], end: float, answers: list[Answer], seed: int) -> None:
    """Grade the study image after image (a random class each), moving to the next code when one is done. The
    first code is already signed in (warm-up)."""
    rng = random.Random(seed)
    for n, code in enumerate(codes):
        if n:
            await sign_in(session, url, "reader", code)
        while time.time() < end:
            done, total = await _progress(session.page)
            image_id = await asyncio.to_thread(_next_image, workspace, study_id, code)
            if image_id is None:
                break
            index = rng.randrange(len(classes))
            answer = Answer(code, image_id, classes[index], time.time())
            answers.append(answer)
            until = [time.time() + TIMEOUT_MS / 1000]
            poll = asyncio.create_task(asyncio.to_thread(_stored_at, db, study_id, code, image_id, classes[index],
                                                         until))
            await session.interact("answer", lambda: session.page.locator(f".st-key-rs_class_{index} button").click())
            until[0] = min(until[0], time.time() + 5)
            answer.stored = await poll
            if await _progress(session.page) == (done + 1, total):
                answer.acknowledged = time.time()
        if time.time() >= end:
            return
        await sign_out_reader(session)


RESEARCHER_PAGES = ("penalties", "performance")  # researcher n starts on page n % 2, then alternates


async def researcher(session: Session, workspace: Path, task: Task, end: float,
                     steps: dict[str, int], seed: int, first_page: int) -> None:
    """Alternate between the Penalties page (a cell of the matrix edited) and the Performance page (threshold
    slider moved by keys), two interactions per visit, through the sidebar."""
    rng = random.Random(seed)
    k = task.num_classes
    for visit in range(first_page, 10**9):
        page = RESEARCHER_PAGES[visit % 2]
        if visit > first_page:
            await session.switch_page(page)
        for _ in range(2):
            if time.time() >= end:
                return
            if page == "performance":
                slider = session.page.locator("input[type='range'][aria-label^='Threshold: a case is positive']")
                key = rng.choice(["ArrowRight", "ArrowLeft", "PageUp", "PageDown"])
                await slider.focus()
                await session.interact("threshold", lambda: slider.press(key))
                steps["threshold"] = steps.get("threshold", 0) + 1
                continue
            row, col, value = rng.randrange(k), rng.randrange(k - 1), rng.randint(1, 9)
            col += col >= row  # off the diagonal
            await session.interact("penalty edit", lambda: _edit_penalty_cell(session.page, row, col, value))
            steps["penalty edit"] = steps.get("penalty edit", 0) + 1
            # Another researcher may have saved theirs since; with one researcher every edit must be there.
            if await asyncio.to_thread(_penalty_in_use, workspace, task, row, col) == value:
                steps["penalty edit in use"] = steps.get("penalty edit in use", 0) + 1


async def _researcher_warm_up(session: Session, url: str, n: int, first_page: int) -> None:
    await sign_in(session, url, "researcher", researcher_name(n))
    await session.open(f"{url}/{RESEARCHER_PAGES[first_page]}")


async def _edit_penalty_cell(page, row: int, col: int, value: float) -> None:
    """Type `value` into cell (row, col) of the Penalties page's matrix editor. The grid is a canvas: click its
    first data cell, walk to the cell with the arrow keys, open the cell editor with Enter, type, commit."""
    grid = page.locator("[class*='st-key-pen_editor_'] [data-testid='stDataFrameResizable']")
    box = await grid.bounding_box(timeout=TIMEOUT_MS)
    await page.mouse.click(box["x"] + GRID_INDEX_PX + 30, box["y"] + GRID_HEADER_PX + GRID_ROW_PX / 2)
    for key in ["ArrowRight"] * col + ["ArrowDown"] * row + ["Enter"]:
        await page.wait_for_timeout(150)
        await page.keyboard.press(key)
    editor = page.locator("input.gdg-input")
    await editor.fill(str(value))
    await editor.press("Enter")


def _penalty_in_use(workspace: Path, task: Task, row: int, col: int) -> float | None:
    """The entry of the penalty matrix the workspace now has in use (the Penalties page's edit lands there)."""
    from core.report.active_penalty import saved_penalty
    from core.store import Workspace

    saved = saved_penalty(Workspace.open(workspace), task)
    return None if saved is None else float(saved.matrix[row, col])


# The matrix editor's geometry in CSS pixels (Streamlit's default row height; the index column holds a class name).
GRID_HEADER_PX, GRID_ROW_PX, GRID_INDEX_PX = 35, 35, 100


# -- the whole run ----------------------------------------------------------------------------------------
def run_load(workspace: Path, plan: LoadPlan, log_path: Path, screenshots: Path | None = None) -> LoadResult:
    """Prepare the study, start the server, drive the sessions for plan.duration_s, check the registry."""
    study_id, codes, task = prepare_study(workspace, plan)
    from core.store import Workspace

    db = Workspace.open(workspace).db_path
    with running_server(workspace, log_path) as url:
        result = asyncio.run(_drive(url, workspace, db, plan, study_id, codes, task, screenshots))
    check_storage(db, result)
    return result


async def _drive(url, workspace, db, plan, study_id, codes, task, screenshots) -> LoadResult:
    from playwright.async_api import async_playwright

    answers: list[Answer] = []
    reruns: dict[str, list[float]] = {}
    steps: dict[str, int] = {}
    errors: list[str] = []
    async with async_playwright() as p:
        browser = await p.chromium.launch(executable_path=chromium_path(), args=CHROMIUM_ARGS)
        sessions = []
        for n in range(plan.readers + plan.researchers):
            context = await browser.new_context(viewport={"width": 1400, "height": 1600})
            page = await context.new_page()
            page.set_default_timeout(TIMEOUT_MS)
            sessions.append(Session(page, f"reader {n + 1}" if n < plan.readers else
                                    f"researcher {n - plan.readers + 1}", reruns, errors))
        # Warm-up, not measured: every session signs in and loads its first page (a cold page takes long).
        warm_up = [sign_in(sessions[n], url, "reader", codes[n][0]) for n in range(plan.readers)]
        warm_up += [_researcher_warm_up(sessions[plan.readers + n], url, n, n % 2) for n in range(plan.researchers)]
        outcomes = await asyncio.gather(*warm_up, return_exceptions=True)
        failed = [f"{session.name} (warm-up): {outcome!r}"[:600] for session, outcome in zip(sessions, outcomes)
                  if isinstance(outcome, BaseException)]
        if failed:
            await browser.close()
            return LoadResult(plan, study_id, 0.0, answers, reruns, steps, errors + failed)
        reruns.clear()
        start = time.time()
        end = start + plan.duration_s
        tasks = [reader(sessions[n], url, workspace, db, study_id, codes[n], task.classes, end, answers, seed=n)
                 for n in range(plan.readers)]
        tasks += [researcher(sessions[plan.readers + n], workspace, task, end, steps, seed=100 + n,
                             first_page=n % 2)
                  for n in range(plan.researchers)]
        outcomes = await asyncio.gather(*tasks, return_exceptions=True)
        elapsed = time.time() - start
        for session, outcome in zip(sessions, outcomes):
            if isinstance(outcome, BaseException):
                errors.append(f"{session.name}: {type(outcome).__name__}: {str(outcome)[:500]}")
        if screenshots is not None:
            screenshots.mkdir(parents=True, exist_ok=True)
            for session in sessions:
                await session.page.screenshot(path=str(screenshots / f"load-{session.name.replace(' ', '-')}.png"),
                                              full_page=True)
        await browser.close()
    return LoadResult(plan, study_id, elapsed, answers, reruns, steps, errors)


def check_storage(db: Path, result: LoadResult) -> None:
    """Fill result.missing, .duplicated and .unacknowledged_rows from the registry."""
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        rows = con.execute("SELECT reader_id, image_id, label FROM answers WHERE study_id=?",
                           (result.study_id,)).fetchall()
    finally:
        con.close()
    seen: dict[tuple[str, str], list[str]] = {}
    for reader_id, image_id, label in rows:
        seen.setdefault((reader_id, image_id), []).append(label)
    result.duplicated = [pair for pair, labels in seen.items() if len(labels) > 1]
    result.missing = [a for a in result.acknowledged if seen.get((a.reader_id, a.image_id)) != [a.label]]
    acknowledged = {(a.reader_id, a.image_id) for a in result.acknowledged}
    result.unacknowledged_rows = sum(pair not in acknowledged for pair in seen)
