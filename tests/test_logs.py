"""Structured logs: --log-json turns our key=value messages into typed JSON fields."""

from __future__ import annotations

import json
import logging

from flows.logs import JsonLinesFormatter, parse_fields


def test_parse_fields_types_values() -> None:
    event, fields = parse_fields("clip lang=ja line=3 voice=Cherry duration_s=2.04 characters=34")
    assert event == "clip"
    assert fields == {"lang": "ja", "line": 3, "voice": "Cherry", "duration_s": 2.04, "characters": 34}


def test_json_formatter_carries_run_context() -> None:
    record = logging.LogRecord(
        "prefect.task_runs", logging.INFO, __file__, 1, "estimate lang=ko cost=%.4f USD", (0.0012,), None
    )
    record.task_run_name = "synthesize-ko"
    record.flow_run_id = "1234"
    doc = json.loads(JsonLinesFormatter().format(record))
    assert doc["level"] == "info" and doc["task_run_name"] == "synthesize-ko" and doc["flow_run_id"] == "1234"
    assert doc["event"] == "estimate" and doc["lang"] == "ko" and doc["cost"] == 0.0012


def test_plain_messages_keep_their_text() -> None:
    record = logging.LogRecord(
        "prefect", logging.WARNING, __file__, 1, "Finished in state Completed()", (), None
    )
    doc = json.loads(JsonLinesFormatter().format(record))
    assert doc["message"] == "Finished in state Completed()"
