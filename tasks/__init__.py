"""One module per pipeline stage: a thin Prefect task plus the plain functions it calls."""
