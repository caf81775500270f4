"""Prefect flows and the command line. `python -m flows.dub VIDEO --langs ja,en,ko`."""
