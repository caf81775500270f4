"""End to end: the sample dubbed into three languages through the real flow (temporary Prefect server,
loopback DashScope spoken to by the real SDK, real tiny.en Whisper, real ffmpeg)."""

from __future__ import annotations

import json
import shutil
from datetime import UTC
from pathlib import Path

import pytest

from tests.loopback_dashscope import LoopbackDashScope
from tests.mediacheck import decode_audio_stream, ffprobe_format, ffprobe_streams, rms_db, video_packet_hashes

pytestmark = pytest.mark.e2e
LANGS = ["ja", "en", "ko"]
RATE = 48000


@pytest.fixture(scope="module")
def job(prefect_harness, sample_video: Path, tiny_en_model: Path, tmp_path_factory: pytest.TempPathFactory):
    """Run the flow once for the module; yield what the tests inspect."""
    from core.config import build_config
    from flows.dub import dub

    tmp = tmp_path_factory.mktemp("e2e")
    with LoopbackDashScope() as server, pytest.MonkeyPatch.context() as mp:
        mp.setenv("DASHSCOPE_HTTP_BASE_URL", server.base_http_api_url)
        mp.setenv("DASHSCOPE_API_KEY", server.api_key)
        config = build_config(
            video=sample_video, langs=",".join(LANGS), out=tmp / "out", asr_model=str(tiny_en_model),
            cache_dir=tmp / "cache", retry_base_delay_s=0.01, separator="none",
        )  # fmt: skip
        result = dub(config)
        first_run = {"tts": server.count("tts"), "mt": server.count("mt")}
        yield {"config": config, "result": result, "server": server, "first_run": first_run, "tmp": tmp}


def test_video_stream_is_copied_bit_exact(job, sample_video: Path) -> None:
    assert video_packet_hashes(job["result"].video) == video_packet_hashes(sample_video)


def test_original_plus_one_tagged_track_per_language(job) -> None:
    audio = [s for s in ffprobe_streams(job["result"].video) if s["codec_type"] == "audio"]
    assert len(audio) == 1 + len(LANGS)
    tags = [s.get("tags", {}) for s in audio]
    assert [t.get("language") for t in tags] == ["eng", "jpn", "eng", "kor"]
    assert [t.get("title") for t in tags[1:]] == ["Japanese (AI dub)", "English (AI dub)", "Korean (AI dub)"]
    assert [s["disposition"]["default"] for s in audio] == [0, 1, 0, 0]
    assert all(s["codec_name"] == "aac" for s in audio)


def test_every_audio_track_lasts_as_long_as_the_video(job, sample_video: Path) -> None:
    duration = float(ffprobe_format(sample_video)["duration"])
    for i in range(1 + len(LANGS)):
        samples = decode_audio_stream(job["result"].video, i, RATE)
        assert abs(samples.size / RATE - duration) <= 0.1, (i, samples.size / RATE, duration)


def test_dubbed_speech_starts_at_each_line(job) -> None:
    segments = json.loads((job["config"].out_dir / "segments.json").read_text())["lines"]
    assert len(segments) >= 6
    for n, lang in enumerate(LANGS):
        track = decode_audio_stream(job["result"].video, 1 + n, RATE)
        for line in segments:
            at = int(line["start"] * RATE)
            before = track[max(0, at - int(0.25 * RATE)) : at - int(0.03 * RATE)]
            after = track[at : at + int(0.25 * RATE)]
            assert rms_db(after) > -40, (lang, line["index"], rms_db(after))
            assert rms_db(after) - rms_db(before) > 15, (lang, line["index"])


def test_delivered_tracks_meet_loudness_and_true_peak(job, sample_video: Path) -> None:
    """Measured on the decoded output, as a black-box check would: each dub track within 1 LU of the
    source programme loudness, true peak at most -1 dBTP."""
    from audio.mix import integrated_loudness, true_peak_db

    source = integrated_loudness(decode_audio_stream(sample_video, 0, RATE, channels=2), RATE)
    for n in range(len(LANGS)):
        track = decode_audio_stream(job["result"].video, 1 + n, RATE, channels=2)
        assert abs(integrated_loudness(track, RATE) - source) <= 1.0
        assert true_peak_db(track) <= -1.0


def test_subtitles_and_report(job) -> None:
    out = job["config"].out_dir
    report = json.loads((out / "report.json").read_text())
    assert "AI-generated" in report["ai_disclosure"]
    assert set(report["tracks"]) == set(LANGS)
    for lang in LANGS:
        assert (out / f"sample.{lang}.srt").read_text().startswith("1\n")
        assert (out / f"sample.{lang}.vtt").read_text().startswith("WEBVTT")
        track = report["tracks"][lang]
        assert abs(track["integrated_lufs"] - report["source"]["integrated_lufs"]) <= 1.0
        assert track["true_peak_dbtp"] <= -1.0
    subs = [s for s in ffprobe_streams(job["result"].video) if s["codec_type"] == "subtitle"]
    assert [s.get("tags", {}).get("language") for s in subs] == ["jpn", "eng", "kor"]
    tags = {k.lower(): v for k, v in ffprobe_format(job["result"].video)["tags"].items()}
    assert "AI-generated" in tags["comment"] and "AI-generated" in tags["ai_generated"]


def test_first_run_calls_each_line_once(job) -> None:
    lines = len(json.loads((job["config"].out_dir / "segments.json").read_text())["lines"])
    # en is the source language: its text is used as is, no translation call
    assert job["first_run"] == {"tts": 3 * lines, "mt": 2 * lines}


def test_logs_carry_neither_script_text_nor_key(job, sample_truth: dict) -> None:
    import asyncio

    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId

    async def read_all() -> list[str]:
        async with get_client() as client:
            runs = await client.read_flow_runs()
            ids = [r.id for r in runs]
            logs = await client.read_logs(
                log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(any_=ids)), limit=200
            )
            return [log.message for log in logs]

    messages = asyncio.run(read_all())
    assert len(messages) > 20
    blob = "\n".join(messages)
    assert job["server"].api_key not in blob
    out = job["config"].out_dir
    texts = [s["text"] for s in sample_truth["sentences"]]
    for lang in LANGS:
        texts += [ln["text"] for ln in json.loads((out / f"lines.{lang}.json").read_text())["lines"]]
    for text in texts:
        assert text not in blob
        assert text[:20] not in blob


def test_rerun_makes_no_calls_and_an_edit_resynthesises_one_line(job) -> None:
    from flows.dub import dub

    server: LoopbackDashScope = job["server"]
    server.reset()
    dub(job["config"])
    assert server.count("tts") == 0 and server.count("mt") == 0

    plan_path = job["config"].out_dir / "segments.json"
    plan = json.loads(plan_path.read_text())
    plan["lines"][2]["text"] = "By noon, the boats come back full of fresh fish."
    plan_path.write_text(json.dumps(plan))
    server.reset()
    result = dub(job["config"])
    assert server.count("tts") == len(LANGS)  # exactly one line per language
    # Qwen-MT sees a line's previous lines of the same scene (tm_list), so the edited line is translated
    # again, and so are the lines whose context it is (their text came back the same: no new audio)
    from tasks.segment import load_plan
    from tasks.translate import CONTEXT_BEFORE, scenes

    _, lines = load_plan(plan_path)
    scene = next(group for group in scenes(lines) if 2 in group)
    with_context = [i for i in scene if 2 <= i <= 2 + CONTEXT_BEFORE]
    assert len(with_context) > 1  # the sample's line 2 is followed by lines of the same scene
    assert server.count("mt") == (len(LANGS) - 1) * len(with_context)
    en_lines = json.loads((job["config"].out_dir / "lines.en.json").read_text())["lines"]
    assert en_lines[2]["text"] == "By noon, the boats come back full of fresh fish."
    assert result.video.is_file()


def test_a_failing_line_fails_the_job_naming_line_and_code(job, tmp_path: Path) -> None:
    from core.errors import UpstreamError
    from flows.dub import dub

    config = job["config"].model_copy(update={"out": tmp_path / "out", "cache_dir": tmp_path / "cache"})
    server: LoopbackDashScope = job["server"]
    server.reset()
    server.fail_next("tts", 400, "DataInspectionFailed", times=1)
    with pytest.raises(UpstreamError, match=r"line \d+ \((ja|en|ko)\) failed: HTTP 400 DataInspectionFailed"):
        dub(config)
    assert not (tmp_path / "out" / "sample.dubbed.mkv").exists()
    shutil.rmtree(tmp_path / "out", ignore_errors=True)


def test_dry_run_estimates_without_calling_anything(job, tmp_path: Path) -> None:
    from flows.dub import dub

    server: LoopbackDashScope = job["server"]
    fresh = job["config"].model_copy(
        update={"out": tmp_path / "dry", "cache_dir": tmp_path / "cache", "dry_run": True}
    )
    server.reset()
    result = dub(fresh)
    assert server.count() == 0
    assert result.video is None and not (tmp_path / "dry" / "sample.dubbed.mkv").exists()
    by_lang = {e.language: e for e in result.estimates}
    n_lines = len(json.loads((tmp_path / "dry" / "segments.json").read_text())["lines"])
    assert all(e.lines_to_synthesize == n_lines for e in by_lang.values())
    assert by_lang["en"].exact and not by_lang["ja"].exact  # en is the source text itself
    assert by_lang["en"].characters == sum(len(s["text"]) for s in json.loads(
        (tmp_path / "dry" / "segments.json").read_text())["lines"])  # fmt: skip
    assert by_lang["en"].currency == "USD" and by_lang["en"].cost == pytest.approx(
        by_lang["en"].characters / 1e5
    )

    warm = job["config"].model_copy(update={"out": tmp_path / "dry2", "dry_run": True})
    estimates = dub(warm).estimates
    assert server.count() == 0
    assert all(e.lines_to_synthesize == 0 and e.cost == 0 and e.exact for e in estimates)


def test_budget_refuses_before_any_paid_call(job, tmp_path: Path) -> None:
    from flows.dub import dub
    from tasks.estimate import BudgetExceededError

    server: LoopbackDashScope = job["server"]
    config = job["config"].model_copy(
        update={"out": tmp_path / "out", "cache_dir": tmp_path / "cache", "budget": 0.0001}
    )
    server.reset()
    with pytest.raises(BudgetExceededError, match="exceeds --budget"):
        dub(config)
    assert server.count() == 0


def test_subtitles_seed_the_plan_and_skip_recognition(job, tmp_path: Path, sample_truth: dict) -> None:
    from flows.dub import dub

    srt_path = tmp_path / "truth.srt"
    cues = []
    for n, s in enumerate(sample_truth["sentences"], start=1):

        def stamp(t: float) -> str:
            ms = int(round(t * 1000))
            return f"{ms // 3600000:02d}:{ms // 60000 % 60:02d}:{ms // 1000 % 60:02d},{ms % 1000:03d}"

        cues.append(f"{n}\n{stamp(s['start'])} --> {stamp(s['end'])}\n{s['text']}\n")
    srt_path.write_text("\n".join(cues))
    config = job["config"].model_copy(
        update={"out": tmp_path / "out", "subtitles": srt_path, "source_lang": "en"}
    )
    result = dub(config)
    assert not (tmp_path / "out" / "work" / "transcript.json").exists()
    plan = json.loads((tmp_path / "out" / "segments.json").read_text())["lines"]
    assert [ln["start"] for ln in plan] == [s["start"] for s in sample_truth["sentences"]]
    assert [ln["text"] for ln in plan] == [s["text"] for s in sample_truth["sentences"]]
    assert result.video is not None and result.video.is_file()


def test_segments_file_reuses_everything(job, tmp_path: Path) -> None:
    from flows.dub import dub

    server: LoopbackDashScope = job["server"]
    plan = tmp_path / "plan.json"
    plan.write_text((job["config"].out_dir / "segments.json").read_text())
    server.reset()
    config = job["config"].model_copy(update={"out": tmp_path / "out", "segments": plan})
    dub(config)
    assert server.count() == 0  # same lines, same cache: nothing to pay for
    assert not (tmp_path / "out" / "work" / "transcript.json").exists()


def test_local_translator_route(job, tmp_path: Path, tiny_qwen_lm: Path) -> None:
    """--translator local: a (tiny, random) Qwen chat model through transformers' loaders, batched;
    Qwen-MT is not called."""
    from flows.dub import dub

    server: LoopbackDashScope = job["server"]
    server.reset()
    config = job["config"].model_copy(
        update={
            "out": tmp_path / "out",
            "langs": ["ja"],
            "translator": "local",
            "translator_model": str(tiny_qwen_lm),
            "shorten": False,  # random-model output runs long; shortening has its own tests
        }
    )
    result = dub(config)
    assert server.count("mt") == 0
    lines = json.loads((tmp_path / "out" / "lines.ja.json").read_text())["lines"]
    assert lines and all(ln["text"].strip() for ln in lines)
    assert server.count("tts") == len(lines)
    assert result.video is not None and result.video.is_file()


def test_local_tts_route(job, tmp_path: Path, tiny_qwen_tts: dict[str, Path]) -> None:
    """--tts local: a (tiny, random) Qwen3-TTS CustomVoice checkpoint through the real
    Qwen3TTSModel.from_pretrained, lines batched; DashScope TTS is not called."""
    import torch

    from flows.dub import dub

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny matrices: thread hand-offs cost more than the arithmetic
    try:
        server: LoopbackDashScope = job["server"]
        server.reset()
        plan = json.loads((job["config"].out_dir / "segments.json").read_text())
        plan["lines"] = plan["lines"][:3]  # three lines keep the random model's CPU time short
        plan_path = tmp_path / "plan.json"
        plan_path.write_text(json.dumps(plan))
        config = job["config"].model_copy(
            update={
                "out": tmp_path / "out", "langs": ["en"], "tts": "local", "voice": "ryan",
                "segments": plan_path, "tts_local_model": str(tiny_qwen_tts["custom_voice"]), "tts_batch": 2,
            }
        )  # fmt: skip
        result = dub(config)
    finally:
        torch.set_num_threads(threads)
    assert server.count("tts") == 0
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    n_lines = report["source"]["lines"]
    manifest = json.loads((tmp_path / "out" / "work" / "clips.en.json").read_text())
    assert manifest["identity"]["route"] == "local" and len(manifest["clips"]) == n_lines
    assert all(c["sample_rate"] == 24000 and c["duration"] > 0 for c in manifest["clips"])
    assert report["tracks"]["en"]["synthesis"]["billed_characters"] == 0
    assert result.video is not None and result.video.is_file()


def test_editing_a_translation_resynthesises_only_that_line(job) -> None:
    from flows.dub import dub

    server: LoopbackDashScope = job["server"]
    path = job["config"].out_dir / "lines.ja.json"
    data = json.loads(path.read_text())
    data["lines"][1]["text"] = "毎朝、船は日の出前に出発します。"
    path.write_text(json.dumps(data, ensure_ascii=False))
    server.reset()
    dub(job["config"])
    assert server.count("mt") == 0  # the user's translation is kept, nothing re-translated
    assert [r.body["input"]["text"] for r in server.requests_of("tts")] == [
        "毎朝、船は日の出前に出発します。"
    ]
    kept = json.loads(path.read_text())["lines"][1]
    assert kept["text"] == "毎朝、船は日の出前に出発します。" and kept["edited"] is True
    server.reset()
    dub(job["config"])
    assert server.count() == 0  # and the edit survives further runs


def test_prefect_artifacts_summarise_the_run(job) -> None:
    import asyncio

    from prefect.client.orchestration import get_client

    async def read() -> dict:
        async with get_client() as client:
            return {a.key: a for a in await client.read_artifacts() if a.key}

    artifacts = asyncio.run(read())
    assert {"dub-summary", "dub-output", "dub-timing-ja", "dub-timing-en", "dub-timing-ko"} <= set(artifacts)
    table = artifacts["dub-timing-ja"].data
    rows = json.loads(table) if isinstance(table, str) else table
    assert set(rows[0]) == {"index", "start", "slot_end", "clip_s", "placed_s", "speed", "truncated_s"}
    assert "sample.dubbed.mkv" in str(artifacts["dub-output"].data)
    summary = str(artifacts["dub-summary"].data)
    header = next(line for line in summary.splitlines() if line.startswith("| language"))
    assert [c.strip() for c in header.strip("|").split("|")] == [
        "language", "lines", "stretched", "truncated", "within cap", "shortened", "unkept", "LUFS",
        "true peak", "characters",
    ]  # fmt: skip
    lines = summary.splitlines()
    table = lines[lines.index(header) + 2 :]
    rows = table[: next((i for i, line in enumerate(table) if not line.startswith("| ")), len(table))]
    assert rows and all(row.split("|")[1].strip() in LANGS for row in rows)  # (the latest run's languages)
    assert "| speaker | lines | seconds | voice | cloned | chosen by |" in summary  # one row per speaker
    assert "Stage times: probe" in summary and "synthesize" in summary and "Billed characters" in summary


def test_task_runs_are_named_by_stage_language_and_line(job) -> None:
    """What the Prefect UI lists: flow runs tagged with their languages, a tts-<lang>-<index> task run
    per line, the per-language stages, and per-language progress artifacts updated as lines finish."""
    import asyncio

    from prefect.client.orchestration import get_client

    async def read() -> tuple[list, list, list]:
        async with get_client() as client:
            runs: list = []
            while batch := await client.read_task_runs(limit=200, offset=len(runs)):  # the API's page cap
                runs += batch
            return runs, await client.read_artifacts(), await client.read_flow_runs(limit=200)

    runs, artifacts, flow_runs = asyncio.run(read())
    by_name = {run.name: run for run in runs}
    n_lines = len(json.loads((job["config"].out_dir / "segments.json").read_text())["lines"])
    for lang in LANGS:
        for index in range(n_lines):
            assert f"tts-{lang}-{index:04d}" in by_name
        for stage in ("translate", "lines", "assemble"):
            assert f"{stage}-{lang}" in by_name
    assert any({f"lang:{lang}" for lang in LANGS} <= set(run.tags) for run in flow_runs)
    assert all(not run.tags for run in runs if run.name.startswith("tts-"))  # (no slot lease per line)
    progress = {a.description for a in artifacts if a.type == "progress"}
    assert {f"synthesize-{lang}: progress" for lang in LANGS} <= progress


def test_separation_route(job, tmp_path: Path) -> None:
    """--separator htdemucs with a (tiny, random) HTDemucs saved as a local model and loaded through
    demucs' own loader: stems are written at the source layout and the dub is mixed over the background."""
    from flows.dub import dub
    from tests.tiny_demucs import TINY_NAME, build_tiny_repo

    repo = build_tiny_repo(tmp_path / "demucs")
    plan = tmp_path / "plan.json"  # random-weight "vocals" hold no speech to recognise: reuse the plan
    plan.write_text((job["config"].out_dir / "segments.json").read_text())
    config = job["config"].model_copy(
        update={"out": tmp_path / "out", "langs": ["en"], "separator": "htdemucs", "demucs_model": TINY_NAME,
                "demucs_dir": repo, "segments": plan}
    )  # fmt: skip
    result = dub(config)
    work = tmp_path / "out" / "work"
    import soundfile as sf

    for stem in ("vocals.wav", "background.wav"):
        info = sf.info(str(work / stem))
        assert (info.samplerate, info.channels) == (48000, 2)
        assert abs(info.duration - 29.6) < 0.01
    assert result.video is not None and result.video.is_file()
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert report["job"]["separator"] == "htdemucs"


def test_mp4_delivery(job, tmp_path: Path, sample_video: Path) -> None:
    from flows.dub import dub

    config = job["config"].model_copy(
        update={"out": tmp_path / "out", "container": "mp4", "audio_codec": "opus"}
    )
    result = dub(config)
    assert result.video is not None and result.video.suffix == ".mp4"
    streams = ffprobe_streams(result.video)
    audio = [s for s in streams if s["codec_type"] == "audio"]
    subs = [s for s in streams if s["codec_type"] == "subtitle"]
    assert [s["codec_name"] for s in audio] == ["aac", "opus", "opus", "opus"]
    assert [s.get("tags", {}).get("language") for s in audio] == ["eng", "jpn", "eng", "kor"]
    assert [s["disposition"]["default"] for s in audio] == [0, 1, 0, 0]
    assert [s["codec_name"] for s in subs] == ["mov_text"] * 3
    assert [s.get("tags", {}).get("language") for s in subs] == ["jpn", "eng", "kor"]
    assert video_packet_hashes(result.video) == video_packet_hashes(sample_video)
    duration = float(ffprobe_format(sample_video)["duration"])
    for i in range(4):
        assert abs(decode_audio_stream(result.video, i, RATE).size / RATE - duration) <= 0.1


def test_over_long_lines_are_shortened_through_the_chat_model(job, tmp_path: Path) -> None:
    """A slow voice (0.2 s per billed character, 3x the loopback default) makes most clips overrun their
    slot beyond the 1.25x cap; those lines are rewritten shorter by the DashScope chat model and
    re-synthesised, and the report counts what finally fitted."""
    from flows.dub import dub

    server: LoopbackDashScope = job["server"]
    server.reset()
    server.seconds_per_char = 0.2
    try:
        config = job["config"].model_copy(
            update={"out": tmp_path / "out", "cache_dir": tmp_path / "cache", "langs": ["ja"]}
        )
        dub(config)
    finally:
        server.seconds_per_char = 0.06
    report = json.loads((tmp_path / "out" / "report.json").read_text())["tracks"]["ja"]
    synthesis = report["synthesis"]
    assert synthesis["over_cap"] > 0 and synthesis["shortened"] > 0
    chats = server.requests_of("chat")
    # rewrites predicted before synthesis (one language: all of them come before the first TTS request)
    kinds = [r.kind for r in server.requests_of() if r.kind in ("chat", "tts")]
    before_synthesis = kinds.index("tts") if "tts" in kinds else len(kinds)
    assert synthesis["rewritten_to_fit"] <= before_synthesis
    assert len(chats) == synthesis["attempts"] + before_synthesis
    assert chats[0].body["model"] == "qwen-flash"
    assert chats[0].body["input"]["messages"][0]["role"] == "system"
    lines = json.loads((tmp_path / "out" / "lines.ja.json").read_text())["lines"]
    assert sum(1 for ln in lines if ln["shortened"]) == synthesis["shortened"]
    # one synthesis per line, plus one per shortened candidate that made progress
    assert (
        report["lines"] + synthesis["shortened"]
        <= server.count("tts")
        <= report["lines"] + synthesis["attempts"]
    )
    # the lines that were shortened now fit, or are counted as still over the cap
    assert synthesis["fitted"] + synthesis["still_over"] == synthesis["over_cap"]


def _consent(tmp_path: Path, languages: list[str]) -> Path:
    """A consent record of the sample's narrator, with a voice print from a cut of the narration (the
    sample given at `consent add --sample`)."""
    import subprocess
    from datetime import datetime, timedelta

    from cloning.ledger import add_record
    from tests.conftest import SAMPLE, SAMPLE_TRUTH

    ledger = tmp_path / "ledger"
    ledger.mkdir()
    document = ledger / "signed.pdf"
    document.write_bytes(b"%PDF-1.4 signed consent of the narrator")
    sentences = json.loads(SAMPLE_TRUTH.read_text())["sentences"]
    sample = tmp_path / "narrator-sample.wav"
    subprocess.run(
        ["ffmpeg", "-nostdin", "-v", "error", "-y", "-i", str(SAMPLE), "-ss", str(sentences[4]["start"]),
         "-to", str(sentences[5]["end"]), "-ac", "1", "-ar", "24000", str(sample)],
        check=True,
    )  # fmt: skip
    add_record(
        ledger, speaker_id="narrator", speaker_name="Sample Narrator", granted_by="Sample Narrator",
        document=document, permitted_languages=languages, permitted_uses=["dubbing of the sample channel"],
        expires_at=datetime.now(UTC) + timedelta(days=30), sample=sample,
    )  # fmt: skip
    return ledger


def test_cloned_voice_through_the_flow_api_route(job, tmp_path: Path) -> None:
    """--clone: consent checked, a reference chosen from the audio, ONE enrollment for every line and
    language, the VC model used for synthesis, one audit entry per language, disclosure in the file."""
    from cloning.ledger import read_audit
    from flows.dub import dub

    ledger = _consent(tmp_path, ["ja", "ko"])
    server: LoopbackDashScope = job["server"]
    server.reset()
    config = job["config"].model_copy(
        update={"out": tmp_path / "out", "langs": ["ja", "ko"], "clone": "narrator", "consent_dir": ledger,
                "clone_use": "dubbing of the sample channel"}
    )  # fmt: skip
    result = dub(config)
    assert server.count("voice") == 1
    models = {r.body["model"] for r in server.requests_of("tts")}
    assert models == {"qwen3-tts-vc-2026-01-22"}
    events = [e["event"] for e in read_audit(ledger)]
    assert events.count("clone_created") == 1 and events.count("clone_synthesis") == 2
    audit_text = (ledger / "audit.log").read_text()
    for line in json.loads((tmp_path / "out" / "lines.ja.json").read_text())["lines"]:
        assert line["text"] not in audit_text and line["source"] not in audit_text
    tags = {k.lower(): v for k, v in ffprobe_format(result.video)["tags"].items()}
    assert "cloned from speaker narrator" in tags["comment"] and "consent" in tags["comment"]
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert report["job"]["clone"]["speaker_id"] == "narrator"


def test_clone_without_covering_consent_makes_no_call(job, tmp_path: Path) -> None:
    from cloning.ledger import ConsentError
    from flows.dub import dub

    ledger = _consent(tmp_path, ["ja", "ko"])
    server: LoopbackDashScope = job["server"]
    server.reset()
    config = job["config"].model_copy(
        update={"out": tmp_path / "out", "langs": ["ja", "fr"], "clone": "narrator", "consent_dir": ledger,
                "clone_use": "dubbing of the sample channel"}
    )  # fmt: skip
    with pytest.raises(ConsentError, match="French"):
        dub(config)
    assert server.count() == 0
    assert not (tmp_path / "out").exists()


def test_verify_reports_per_line_error_rates(job, tmp_path: Path) -> None:
    """--verify on the English dub with the real tiny.en: per-line WER against the text that was spoken."""
    from flows.dub import dub

    config = job["config"].model_copy(update={"out": tmp_path / "out", "langs": ["en"], "verify": True})
    dub(config)
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    check = report["tracks"]["en"]["verify"]
    assert check["metric"] == "wer" and check["lines"] == report["source"]["lines"]
    # the loopback "voice" is a tone, not speech: every line is heard wrongly, so all are flagged
    assert check["flagged"] == check["lines"] and check["track_wer"] > 0.5
    per_line = json.loads((tmp_path / "out" / "work" / "verify.en.json").read_text())
    assert len(per_line["lines"]) == check["lines"]


def test_split_outputs(job, tmp_path: Path, sample_video: Path) -> None:
    """--split-outputs: one video per language (original audio + that dub + its subtitles) and WAV stems."""
    import soundfile as sf

    from flows.dub import dub

    config = job["config"].model_copy(update={"out": tmp_path / "out", "split_outputs": True})
    dub(config)
    duration = float(ffprobe_format(sample_video)["duration"])
    for lang, tag in (("ja", "jpn"), ("en", "eng"), ("ko", "kor")):
        single = tmp_path / "out" / f"sample.{lang}.mkv"
        streams = ffprobe_streams(single)
        audio = [s.get("tags", {}).get("language") for s in streams if s["codec_type"] == "audio"]
        assert audio == ["eng", tag]
        assert [s.get("tags", {}).get("language") for s in streams if s["codec_type"] == "subtitle"] == [tag]
        assert video_packet_hashes(single) == video_packet_hashes(sample_video)
        stem = sf.info(str(tmp_path / "out" / f"sample.{lang}.dub.wav"))
        assert (stem.samplerate, stem.channels, stem.subtype) == (48000, 2, "PCM_24")
        assert abs(stem.duration - duration) < 0.05
