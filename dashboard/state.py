"""Every st.session_state key the dashboard uses, declared once: pages and helpers import these names."""

from __future__ import annotations

# Penalty matrix edited in this session: {task name: rows} and {task name: its name}.
PENALTY_STATE_KEY = "penalty_matrix"
PENALTY_NAMES_KEY = "penalty_matrix_name"
