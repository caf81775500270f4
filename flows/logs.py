"""Console logging for CLI runs: Prefect's own logs stay, tracebacks do not (they reach the Prefect API
and UI, and `--debug` shows them); user errors are printed once by the CLI."""

from __future__ import annotations

import logging
import os


class DropTracebacks(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        record.exc_info = None
        record.exc_text = None
        record.stack_info = None
        return True


def configure_prefect_environment(debug: bool = False, json_logs: bool = False) -> None:
    # Offline machines: no telemetry calls (they also cause "database is locked" noise).
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    import prefect  # noqa: F401 - importing sets up Prefect's logging handlers
    from prefect.logging.configuration import setup_logging

    setup_logging()
    if json_logs:
        use_json_logs()
    if debug:
        return
    for name in ("", "prefect", "prefect.flow_runs", "prefect.task_runs", "prefect.engine"):
        for handler in logging.getLogger(name).handlers:
            if not any(isinstance(f, DropTracebacks) for f in handler.filters):
                handler.addFilter(DropTracebacks())


class JsonLinesFormatter(logging.Formatter):
    """One JSON object per record: time, level, logger, Prefect run ids and names, the event (first
    word of our messages) and its key=value fields as typed JSON values. Our messages never carry
    script text or keys, so the fields are safe to ship to a log store as they are."""

    RUN_FIELDS = ("flow_run_id", "flow_run_name", "task_run_id", "task_run_name", "flow_name", "task_name")

    def format(self, record: logging.LogRecord) -> str:
        import json

        message = record.getMessage()
        event, fields = parse_fields(message)
        doc: dict[str, object] = {
            "ts": self.formatTime(record, "%Y-%m-%dT%H:%M:%S") + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
        }
        for name in self.RUN_FIELDS:
            value = getattr(record, name, None)
            if value is not None:
                doc[name] = str(value)
        doc["event"] = event
        doc.update(fields)
        if not fields:
            doc["message"] = message
        return json.dumps(doc, ensure_ascii=False)


def parse_fields(message: str) -> tuple[str, dict[str, object]]:
    """ "clip lang=ja line=3 attempts=1" -> ("clip", {"lang": "ja", "line": 3, "attempts": 1})."""
    words = message.split()
    if not words:
        return "", {}
    fields: dict[str, object] = {}
    event_words = []
    for word in words:
        key, sep, value = word.partition("=")
        if sep and key.isidentifier():
            fields[key] = _typed(value)
        elif not fields:
            event_words.append(word)
    return " ".join(event_words), fields


def _typed(value: str) -> object:
    for cast in (int, float):
        try:
            return cast(value)
        except ValueError:
            pass
    return value


def use_json_logs() -> None:
    """Switch every console handler of Prefect and the root logger to JSON lines on stderr."""
    formatter = JsonLinesFormatter()
    for name in ("", "prefect", "prefect.flow_runs", "prefect.task_runs", "prefect.engine"):
        for handler in logging.getLogger(name).handlers:
            if isinstance(handler, logging.StreamHandler) and not isinstance(handler, logging.FileHandler):
                handler.setFormatter(formatter)
