"""Audit trail (admins): who signed in, created, changed, archived or deleted what, and who answered, with filters
and a CSV export. The trail is append-only; this page only reads it (core/store/audit_trail.py)."""

from __future__ import annotations

import datetime as dt

import streamlit as st

from core.errors import InputError
from core.store.access import allowed
from core.store.audit_trail import ACTIONS, read_trail, trail_users
from dashboard.access_ui import current_actor
from dashboard.common import get_workspace
from dashboard.downloads import table_download
from dashboard.widgets import show_error

MAX_ROWS = 5000
ANY = ""

st.title("Audit trail")
actor = current_actor()
if not allowed(actor, "read_audit"):
    st.error("The audit trail is for admins only.", icon=":material/block:")
    st.stop()
ws = get_workspace()
st.caption("Every sign-in (and refused or locked one), user change, run, dataset, rename, archive, restore, delete, "
           "study, and each reader answer stored or changed, with its time. Nothing here can be edited or removed, "
           "from this page or anywhere else in the app.")
cols = st.columns(4)
users = [ANY, *trail_users(ws, actor=actor)]
user = cols[0].selectbox("User", users, format_func=lambda u: u or "Everyone", key="audit_user")
action = cols[1].selectbox("Action", [ANY, *ACTIONS], format_func=lambda a: ACTIONS.get(a, "Every action"),
                           key="audit_action")
today = dt.date.today()
days = cols[2].date_input("Dates", value=(today - dt.timedelta(days=30), today), key="audit_dates")
contains = cols[3].text_input("Target or detail contains", key="audit_contains", max_chars=200)
since, until = (list(days) + [None, None])[:2] if isinstance(days, (tuple, list)) else (days, None)
try:
    trail = read_trail(ws, actor=actor, user=user or None, action=action or None, since=since,
                       until=None if until is None else until + dt.timedelta(days=1), contains=contains or None,
                       limit=MAX_ROWS)
except InputError as exc:
    show_error("The trail could not be read with these filters.", exc)
    st.stop()
st.caption(f"{len(trail)} entr{'y' if len(trail) == 1 else 'ies'}, newest first"
           + (f" (the newest {MAX_ROWS}; narrow the filters to see older ones)" if len(trail) == MAX_ROWS else ""))
st.dataframe(trail, hide_index=True, width="stretch", key="audit_table")
table_download(trail, "audit trail", key="audit_csv")
