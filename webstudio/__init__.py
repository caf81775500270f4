"""The review studio: a local web app over one job folder (`python -m flows.studio out/<job>`).

`job.py` reads and edits the job's files (the same ones the command line reads), `media.py` prepares
what the page plays (a video per track, captions, the waveform), `redub.py` estimates and runs the
re-dub as a Prefect flow run, `server.py` serves the page and the JSON API; `static/` is the page.
"""
