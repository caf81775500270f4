"""A job folder as the studio sees it: its lines in every language with their review state, and edits
written to the very files the command line reads (segments.json, lines.<lang>.json, cast.json), each
atomically and under the job's lock, so the studio and a command-line run never disagree.

The one file of the studio's own is review.json: which lines a reviewer approved (tied to the text
approved: a changed translation needs approving again) and which lines changed since the last dub.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from core.config import DubConfig, build_config
from core.errors import DubError
from core.files import atomic_path, read_json, write_json_atomic
from core.job import JobPaths
from core.job_lock import JobLockedError, job_lock, lock_holder
from core.languages import get_language
from tasks.segment import Line, load_plan
from tasks.translate import text_hash

REVIEW_FILE = "review.json"
SPED_UP = 1.15  # a line stretched faster than this is worth a listen (the cap is --max-speedup)
# a block's colour, most important first: a reviewer's decision, then what is pending, then problems
STATES = ("approved", "edited", "asr", "cut", "unkept", "sped", "shortened", "fine")
PLAN_FIELDS = {"start", "end", "voice"}
EDIT_FIELDS = PLAN_FIELDS | {"translations", "approved"}


class StudioError(Exception):
    """A request the studio refuses: one line for the page and the HTTP status that says why."""

    status = 400

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        if status is not None:
            self.status = status


class NotAJobError(StudioError):
    status = 404


class CorruptFileError(StudioError):
    status = 422


class LockedError(StudioError):
    status = 423


@dataclass(frozen=True)
class LineTimes:
    speed: float
    truncated_s: float
    clip_s: float
    placed_s: float


def job_name(root: Path, config: Mapping[str, Any] | None, report: Mapping[str, Any]) -> str:
    """The video's name the job's files are named after (`<name>.dubbed.mkv`, `<name>.ja.vtt`)."""
    for found in sorted(root.glob("*.dubbed.*")):
        return found.name.split(".dubbed.")[0]
    if config and config.get("video"):
        return Path(str(config["video"])).stem
    video = (report.get("job") or {}).get("video")
    return Path(str(video)).stem if video else root.name


class StudioJob:
    """One job folder. Every read goes to the files (nothing is kept between requests), so edits made
    with an editor or by a command-line run show at the next request."""

    def __init__(self, root: Path) -> None:
        self.root = root.resolve()

    # -- reading -----------------------------------------------------------------------------------

    def check(self) -> None:
        if not self.root.is_dir():
            raise NotAJobError(f"{self.root.name} is not a folder")
        if not (self.root / "segments.json").is_file():
            raise NotAJobError(
                f"{self.root.name} is not a job folder (no segments.json): open the folder a dub wrote, "
                "e.g. out/<video name>"
            )

    def config_record(self) -> dict[str, Any] | None:
        path = self.root / "work" / "config.json"
        try:
            data = read_json(path)
        except (OSError, ValueError):
            return None
        return data if isinstance(data, dict) else None

    def report(self) -> dict[str, Any]:
        try:
            data = read_json(self.root / "report.json")
        except (OSError, ValueError):
            return {}
        return data if isinstance(data, dict) else {}

    def paths(self) -> JobPaths:
        config = self.config_record()
        report = self.report()
        final = next(iter(sorted(self.root.glob("*.dubbed.*"))), None)
        container = final.suffix.lstrip(".") if final else str((config or {}).get("container") or "mkv")
        return JobPaths(self.root, job_name(self.root, config, report), container)

    def languages(self) -> list[str]:
        report = self.report()
        langs = (report.get("job") or {}).get("languages")
        if not langs:
            langs = (self.config_record() or {}).get("langs")
        if not langs:
            langs = sorted(p.name.split(".")[1] for p in self.root.glob("lines.*.json"))
        return [str(code) for code in langs]

    def run_config(self) -> DubConfig:
        """The options the job last ran with (work/config.json), as a validated config."""
        record = self.config_record()
        if record is None:
            raise StudioError(
                "this job has no recorded options (work/config.json; jobs dubbed before the studio existed): "
                "run it once more from the command line",
                409,
            )
        try:
            return build_config(**record)
        except DubError as exc:
            raise StudioError(f"work/config.json: {exc}", 422) from None

    def plan(self) -> tuple[str, list[Line]]:
        self.check()
        try:
            return load_plan(self.root / "segments.json")
        except DubError as exc:
            raise CorruptFileError(str(exc)) from None

    def translations(self, lang: str) -> dict[int, dict[str, Any]]:
        """lines.<lang>.json's entries by line index ({} before the language was translated)."""
        path = self.root / f"lines.{lang}.json"
        if not path.is_file():
            return {}
        problem = f"{path.name} is not valid (fix it or delete it to translate again)"
        try:
            data = read_json(path)
            entries = {int(e["index"]): e for e in data["lines"]}
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            raise CorruptFileError(problem) from None
        if not all(isinstance(e.get("text"), str) for e in entries.values()):
            raise CorruptFileError(problem)
        return entries

    def review(self) -> dict[str, Any]:
        try:
            data = read_json(self.root / REVIEW_FILE)
        except (OSError, ValueError):
            data = {}
        if not isinstance(data, dict):
            data = {}
        data.setdefault("version", 1)
        data.setdefault("approved", {})
        data.setdefault("changed", {})
        return data

    def times(self, lang: str) -> dict[int, LineTimes]:
        track = (self.report().get("tracks") or {}).get(lang) or {}
        out = {}
        for t in track.get("lines_timing") or []:
            try:
                out[int(t["index"])] = LineTimes(
                    float(t["speed"]), float(t["truncated_s"]), float(t["clip_s"]), float(t["placed_s"])
                )
            except (KeyError, TypeError, ValueError):
                continue
        return out

    def flagged(self, lang: str) -> set[int]:
        track = (self.report().get("tracks") or {}).get(lang) or {}
        return {int(i) for i in (track.get("verify") or {}).get("flagged_lines") or []}

    def cast(self) -> dict[str, Any]:
        try:
            data = read_json(self.root / "cast.json")
        except (OSError, ValueError):
            return {}
        speakers = data.get("speakers") if isinstance(data, dict) else None
        return speakers if isinstance(speakers, dict) else {}

    def view(self) -> dict[str, Any]:
        """GET /api/lines: the plan's lines and, per language, each line's translation, figures and
        review state."""
        source_lang, lines = self.plan()
        review = self.review()
        config = self.config_record() or {}
        route = str(config.get("tts") or "api")
        cast = self.cast()
        langs = self.languages()
        duration = max((ln.slot_end for ln in lines), default=0.0)
        report = self.report()
        duration = float((report.get("source") or {}).get("duration") or duration)
        languages: dict[str, Any] = {}
        for lang in langs:
            entries = self.translations(lang)
            times = self.times(lang)
            flagged = self.flagged(lang)
            approved = review["approved"].get(lang, {})
            changed = set(review["changed"].get(lang, []))
            rows = []
            for line in lines:
                entry = entries.get(line.index, {})
                text = str(entry.get("text", ""))
                t = times.get(line.index)
                states = {
                    "approved": bool(text) and approved.get(str(line.index)) == text_hash(text),
                    "edited": bool(entry.get("edited")) or line.index in changed,
                    "asr": line.index in flagged,
                    "cut": t is not None and t.truncated_s > 0,
                    "unkept": bool(entry.get("unkept")),
                    "sped": t is not None and t.speed > SPED_UP,
                    "shortened": int(entry.get("shortened") or 0) > 0,
                }
                rows.append(
                    {
                        "index": line.index,
                        "text": text,
                        "stale": bool(entry) and entry.get("source") != line.text,
                        "unkept": list(entry.get("unkept") or []),
                        "shortened": int(entry.get("shortened") or 0),
                        "speed": t.speed if t else None,
                        "truncated_s": t.truncated_s if t else None,
                        "placed_s": t.placed_s if t else None,
                        "states": [s for s in STATES if states.get(s)],
                        "state": next((s for s in STATES if states.get(s)), "fine"),
                    }
                )
            try:
                name = get_language(lang).name
            except DubError:
                name = lang
            languages[lang] = {"name": name, "lines": rows}
        speakers = sorted({ln.speaker for ln in lines})
        return {
            "job": self.summary(),
            "source_language": source_lang,
            "duration": duration,
            "sped_up_above": SPED_UP,
            "speakers": [
                {
                    "id": s,
                    "name": (cast.get(s) or {}).get("name"),
                    "voice": ((cast.get(s) or {}).get("voices") or {}).get(route),
                }
                for s in speakers
            ],
            "lines": [
                {
                    "index": ln.index,
                    "start": ln.start,
                    "end": ln.end,
                    "slot_end": round(ln.slot_end, 3),
                    "speaker": ln.speaker,
                    "voice": ln.voice,
                    "text": ln.text,
                }
                for ln in lines
            ],
            "languages": languages,
        }

    def summary(self) -> dict[str, Any]:
        """The job's name, languages, whether it has a video and recorded options, and who holds it."""
        self.check()
        paths = self.paths()
        holder = lock_holder(self.root)
        return {
            "name": paths.name,
            "folder": self.root.name,
            "languages": self.languages(),
            "video": paths.final.is_file(),
            "can_redub": self.config_record() is not None,
            "locked": holder["message"] if holder else None,
        }

    # -- editing -----------------------------------------------------------------------------------

    @contextmanager
    def editing(self) -> Iterator[None]:
        """Hold the job's lock while writing: refused (423) while a run works on the job."""
        try:
            with job_lock(self.root, "studio edit"):
                yield
        except JobLockedError as exc:
            raise LockedError(str(exc)) from None

    def edit_line(self, index: int, body: Mapping[str, Any]) -> None:
        """PATCH /api/lines/<index>: `start`, `end`, `voice` (segments.json), `translations`
        ({lang: text}, lines.<lang>.json) and `approved` ({lang: bool}, review.json). Everything is
        checked before anything is written."""
        unknown = set(body) - EDIT_FIELDS
        if unknown or not body:
            raise StudioError(f"unknown field {sorted(unknown)[0]!r}" if unknown else "nothing to change")
        with self.editing():
            _, lines = self.plan()
            positions = {ln.index: n for n, ln in enumerate(lines)}
            if index not in positions:
                raise StudioError(f"no line {index} in segments.json", 404)
            langs = self.languages()
            plan_change = self._plan_change(index, body)
            translations = body.get("translations") or {}
            approvals = body.get("approved") or {}
            if not isinstance(translations, dict) or not isinstance(approvals, dict):
                raise StudioError("`translations` and `approved` map a language to a value")
            for lang in {*translations, *approvals}:
                if lang not in langs:
                    raise StudioError(f"the job has no language {lang!r} (its languages: {', '.join(langs)})")
            new_files: dict[str, dict[str, Any]] = {}
            for lang, text in translations.items():
                new_files[lang] = self._translation_change(lang, index, lines[positions[index]], text)
            if plan_change:
                self._write_plan(index, plan_change)
            for lang, data in new_files.items():
                write_json_atomic(self.root / f"lines.{lang}.json", data)
            review = self.review()
            changed = review["changed"]
            for lang in langs if plan_change else translations:
                changed[lang] = sorted({*changed.get(lang, []), index})
            for lang, yes in approvals.items():
                approved = review["approved"].setdefault(lang, {})
                entry = self.translations(lang).get(index) or {}
                if yes and entry.get("text"):
                    approved[str(index)] = text_hash(str(entry["text"]))
                else:
                    approved.pop(str(index), None)
            write_json_atomic(self.root / REVIEW_FILE, review)

    def _plan_change(self, index: int, body: Mapping[str, Any]) -> dict[str, Any]:
        change: dict[str, Any] = {}
        for key in ("start", "end"):
            if key in body:
                value = body[key]
                if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
                    raise StudioError(f"`{key}` must be a number of seconds")
                change[key] = round(float(value), 3)
        if "voice" in body:
            voice = body["voice"]
            if voice is not None and not isinstance(voice, str):
                raise StudioError("`voice` must be a voice name or null")
            voice = (voice or "").strip() or None
            if voice is not None:
                voice = self.resolve_voice(voice)
            change["voice"] = voice
        return change

    def resolve_voice(self, voice: str) -> str:
        from models.registry import tts_engine

        config = self.run_config()
        try:
            return tts_engine(config.tts).resolve_voice(config, voice)
        except DubError as exc:
            raise StudioError(str(exc), 422) from None

    def _write_plan(self, index: int, change: Mapping[str, Any]) -> None:
        path = self.root / "segments.json"
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            raise CorruptFileError("segments.json is not valid JSON") from None
        items = data["lines"]
        n = next(n for n, item in enumerate(items) if int(item.get("index", n)) == index)
        item = items[n]
        for key, value in change.items():
            if key == "voice" and value is None:
                item.pop("voice", None)
            else:
                item[key] = value
        for m in (n - 1, n):  # the pause after the line before and after this one
            if 0 <= m < len(items) - 1:
                items[m]["pause_after"] = max(
                    0.0, round(float(items[m + 1]["start"]) - float(items[m]["end"]), 3)
                )
        with atomic_path(path) as tmp:
            tmp.write_text(json.dumps(data, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
            try:
                load_plan(tmp)  # the command line's own checks (order, overlaps, times) before it replaces
            except DubError as exc:
                raise StudioError(str(exc).replace(tmp.name, path.name), 422) from None

    def _translation_change(self, lang: str, index: int, line: Line, text: Any) -> dict[str, Any]:
        if not isinstance(text, str) or not " ".join(text.split()):
            raise StudioError(f"line {index} ({lang}): the translation may not be empty", 422)
        path = self.root / f"lines.{lang}.json"
        self.translations(lang)  # a corrupt file is refused, never rewritten
        if not path.is_file():
            raise StudioError(f"{path.name} does not exist yet: dub the job first", 409)
        data = read_json(path)
        for entry in data["lines"]:
            if int(entry["index"]) == index:
                if entry.get("source") != line.text:
                    raise StudioError(
                        f"line {index} ({lang}): its source text changed since it was translated; "
                        "re-dub first",
                        409,
                    )
                entry["text"] = " ".join(text.split())
                entry["edited"] = True  # what tasks/translate.user_edits keeps as the user wrote it
                entry.pop("auto_hash", None)
                return dict(data)
        raise StudioError(f"line {index} is not in {path.name}: re-dub first", 409)

    def edit_cast(self, speaker: str, body: Mapping[str, Any]) -> None:
        """PATCH /api/cast/<speaker>: `voice` (this job's TTS route) and/or `name` in cast.json."""
        unknown = set(body) - {"voice", "name"}
        if unknown or not body:
            raise StudioError(f"unknown field {sorted(unknown)[0]!r}" if unknown else "nothing to change")
        with self.editing():
            path = self.root / "cast.json"
            try:
                data = read_json(path)
                entry = data["speakers"][speaker]
            except (OSError, ValueError, KeyError, TypeError):
                raise StudioError(f"no speaker {speaker!r} in cast.json", 404) from None
            route = self.run_config().tts
            if "voice" in body:
                if not isinstance(body["voice"], str) or not body["voice"].strip():
                    raise StudioError("`voice` must be a voice name")
                entry.setdefault("voices", {})[route] = self.resolve_voice(body["voice"].strip())
            if "name" in body:
                name = body["name"]
                if name is not None and not isinstance(name, str):
                    raise StudioError("`name` must be text or null")
                entry["name"] = (name or "").strip() or None
            entry.pop("auto_hash", None)  # recognised as the user's edit: tasks/cast.read_cast
            entry["edited"] = True
            write_json_atomic(path, data)
            review = self.review()
            _, lines = self.plan()
            spoken = [ln.index for ln in lines if ln.speaker == speaker]
            for lang in self.languages():
                review["changed"][lang] = sorted({*review["changed"].get(lang, []), *spoken})
            write_json_atomic(self.root / REVIEW_FILE, review)

    def mark_redubbed(self) -> None:
        """After a finished re-dub: nothing is pending any more."""
        review = self.review()
        review["changed"] = {}
        write_json_atomic(self.root / REVIEW_FILE, review)
