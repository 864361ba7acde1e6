"""Streamlit UI building blocks shared by the pages (the entry point is dashboard/app.py)."""
