"""Resilience: a killed run resumes without paying twice, transient API faults cost nothing extra,
Ctrl-C and a full disk end in one clear line and leave no partial output.

Every run is the real thing: the CLI as a subprocess (its own temporary Prefect server, SIGKILL/SIGINT to
its whole process group as a crash or a terminal's Ctrl-C would), or the flow in-process on the session's
Prefect harness; the real SDK against the loopback DashScope; real tiny.en Whisper and ffmpeg.

The reference is one clean in-process run of the sample into ja,ko: its outputs and its TTS requests
(one per line and language) are what every resumed or fault-ridden run must reproduce.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest

from tests.loopback_dashscope import LoopbackDashScope, RecordedRequest
from tests.mediacheck import decode_audio_stream, ffprobe_streams

pytestmark = pytest.mark.e2e
ROOT = Path(__file__).resolve().parent.parent
LANGS = ("ja", "ko")
CONCURRENCY = 2  # --concurrency of the interrupted CLI runs: few lines in flight, so a kill lands mid-stage
TTS_DELAY_S = 2.0  # the loopback holds each TTS request this long: synthesis takes seconds, not 100 ms
# An answer the service finished sending this long before the kill has been journaled (core/journal.py:
# parse + one fsync'd append, milliseconds); one finished later may have died in the socket with the process
JOURNAL_MARGIN_S = 1.0


# -------------------------------------------------------------------------------------------- helpers


@dataclass
class Reference:
    out: Path
    segments: Path
    identity: dict
    keys: dict[str, tuple[str, str]]  # clip cache key -> (lang, text), one per line and language
    billed_total: int
    tts_texts: Counter = field(default_factory=Counter)


def lang_code(request: RecordedRequest) -> str:
    from core.languages import get_language

    return get_language(request.body["input"]["language_type"]).code


def clip_key_of(identity: dict, request: RecordedRequest) -> str:
    from core.clip_cache import clip_key

    return clip_key(identity, lang_code(request), request.body["input"]["text"])


def billed_requests(server: LoopbackDashScope) -> list[RecordedRequest]:
    """TTS requests the service answered with audio (and billed); injected failures are never billed."""
    return [r for r in server.requests_of("tts") if r.status == 200 and r.billed_characters > 0]


def stored_keys(cache: Path, keys: set[str]) -> set[str]:
    """The keys whose cache entry the flow would trust (audio and metadata complete and consistent)."""
    from core.clip_cache import ClipCache

    clip_cache = ClipCache(cache)
    return {k for k in keys if clip_cache.get(k) is not None}


def cli_env(server: LoopbackDashScope, tmp: Path) -> dict[str, str]:
    env = {
        **os.environ,
        "DASHSCOPE_HTTP_BASE_URL": server.base_http_api_url,
        "DASHSCOPE_API_KEY": server.api_key,
        "PREFECT_HOME": str(tmp / "prefect-home"),  # the CLI starts its own temporary server there
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    }
    env.pop("PREFECT_API_URL", None)
    return env


def start_cli(args: list[str], env: dict[str, str], logs: Path) -> subprocess.Popen:
    """`python -m flows.dub ...` in a new session (its own process group, like a job a shell started);
    output to files so a chatty run never blocks on a full pipe."""
    logs.mkdir(parents=True, exist_ok=True)
    with (logs / "stdout").open("w") as stdout, (logs / "stderr").open("w") as stderr:
        return subprocess.Popen(
            [sys.executable, "-m", "flows.dub", *args],
            cwd=ROOT, env=env, stdout=stdout, stderr=stderr, start_new_session=True,
        )  # fmt: skip


def wait_for(condition, what: str, timeout: float, proc: subprocess.Popen | None = None, logs=None) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if proc is not None and proc.poll() is not None:
            tail = (logs / "stderr").read_text()[-3000:] if logs else ""
            pytest.fail(f"the CLI exited ({proc.returncode}) before {what}:\n{tail}")
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(0.02)


def group_alive(pgid: int) -> list[int]:
    """Processes of the group that are still running (zombies awaiting their reaper do not count)."""
    import psutil

    alive = []
    for p in psutil.process_iter(["pid", "status"]):
        try:
            if os.getpgid(p.pid) == pgid and p.info["status"] != psutil.STATUS_ZOMBIE:
                alive.append(p.pid)
        except (ProcessLookupError, psutil.Error):
            continue
    return alive


def tmp_files(root: Path) -> set[Path]:
    return {p for p in root.rglob(".tmp-*")} if root.exists() else set()


def audio_fingerprint(video: Path) -> list[tuple]:
    """Per audio stream: codec, language, title, duration and a digest of the decoded samples."""
    import hashlib

    rows = []
    audio = [s for s in ffprobe_streams(video) if s["codec_type"] == "audio"]
    for i, s in enumerate(audio):
        pcm = decode_audio_stream(video, i, 48000)
        tags = s.get("tags", {})
        rows.append(
            (s["codec_name"], tags.get("language"), tags.get("title"), round(pcm.size / 48000, 3),
             hashlib.sha256(np.ascontiguousarray(pcm).tobytes()).hexdigest()[:16])
        )  # fmt: skip
    return rows


def assert_same_outputs(out: Path, ref: Path) -> None:
    """Same plan lines, and byte-identical translations and subtitles, and the same audio tracks as the clean
    reference run (a plan imported with --segments is rewritten without the recognition metadata)."""
    plan = json.loads((out / "segments.json").read_text())
    assert plan["lines"] == json.loads((ref / "segments.json").read_text())["lines"]  # same plan
    names = [f"lines.{c}.json" for c in LANGS]
    names += [f"sample.{c}.{ext}" for c in LANGS for ext in ("srt", "vtt")]
    for name in names:
        assert (out / name).read_bytes() == (ref / name).read_bytes(), name
    assert audio_fingerprint(out / "sample.dubbed.mkv") == audio_fingerprint(ref / "sample.dubbed.mkv")


@pytest.fixture(scope="module")
def reference(prefect_harness, sample_video: Path, tiny_en_model: Path, tmp_path_factory) -> Reference:
    from core.config import build_config
    from flows.dub import dub

    tmp = tmp_path_factory.mktemp("reference")
    with LoopbackDashScope() as server, pytest.MonkeyPatch.context() as mp:
        mp.setenv("DASHSCOPE_HTTP_BASE_URL", server.base_http_api_url)
        mp.setenv("DASHSCOPE_API_KEY", server.api_key)
        config = build_config(
            video=sample_video, langs=",".join(LANGS), out=tmp / "out", asr_model=str(tiny_en_model),
            cache_dir=tmp / "cache", separator="none", retry_base_delay_s=0.01,
        )  # fmt: skip
        result = dub(config)
        assert result.video is not None and result.video.is_file()
        requests = billed_requests(server)
        billed_total = server.billed_characters_total
    identity = json.loads((tmp / "out" / "work" / f"clips.{LANGS[0]}.json").read_text())["identity"]
    keys = {clip_key_of(identity, r): (lang_code(r), r.body["input"]["text"]) for r in requests}
    n_lines = len(json.loads((tmp / "out" / "segments.json").read_text())["lines"])
    assert len(requests) == len(keys) == n_lines * len(LANGS)  # one request per line and language
    return Reference(
        out=tmp / "out",
        segments=tmp / "out" / "segments.json",
        identity=identity,
        keys=keys,
        billed_total=billed_total,
        tts_texts=Counter((lang_code(r), r.body["input"]["text"]) for r in requests),
    )


# ------------------------------------------------------------------------------ kill -9, then resume

KILL_AFTER = 5  # TTS answers seen before the crash: past translation, well before the last of 16 lines


def test_killed_run_resumes_and_pays_each_stored_line_once(
    reference: Reference, sample_video: Path, tiny_en_model: Path, tmp_path: Path
) -> None:
    """SIGKILL the whole CLI process group (flow, threads, temporary Prefect server) mid-synthesis, spoil
    the cache the way a crash can (a truncated entry, a stray .tmp- file), then run the same command again.

    What is asserted, with S = clip keys the cache trusts after the crash (minus the one we truncate) and
    A = lines whose answer the service had finished sending before the kill (its own records):
      - run 2 pays for no line in S nor in A: an answer received before the kill is journaled
        (core/journal.py) and used on resume; every line never requested is requested, and none twice;
      - the only lines paid twice across both runs are those not yet answered at the kill (in flight: the
        service answered a dead process; at most one per worker thread, languages x --concurrency) and
        the truncated entry (a broken cache, not a crash: its answer had been stored, and retired);
      - a stray `.tmp-*` file holding perfectly good audio is not trusted: its line is synthesised;
      - the final video and every user-facing file equal the clean reference run's (the same plan lines,
        the same bytes for translations and subtitles; per audio track the same codec, tags, duration
        and decoded samples), and run 2 leaves no temporary file of its own.
    """
    from core.clip_cache import ClipCache

    out, cache, logs = tmp_path / "out", tmp_path / "cache", tmp_path / "logs"
    args = [
        str(sample_video), "--langs", ",".join(LANGS), "--separator", "none",
        "--asr-model", str(tiny_en_model), "--out", str(out), "--cache-dir", str(cache),
        "--concurrency", str(CONCURRENCY),
    ]  # fmt: skip
    all_keys = set(reference.keys)
    with LoopbackDashScope() as server:
        server.delay("tts", TTS_DELAY_S)
        env = cli_env(server, tmp_path)
        proc = start_cli(args, env, logs / "run1")
        answered = lambda: server.count("tts") >= KILL_AFTER  # noqa: E731
        wait_for(answered, f"{KILL_AFTER} TTS answers", 300, proc, logs / "run1")
        killed_at = time.monotonic()
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
        wait_for(lambda: not group_alive(proc.pid), "the killed process group to be gone", 10)
        wait_for(lambda: server.in_flight("tts") == 0, "requests of the killed run to finish", 10)
        records1 = billed_requests(server)
        run1 = [clip_key_of(reference.identity, r) for r in records1]
        # answered before the kill: the client had the answer (and wrote it down) before it died
        answered = {
            clip_key_of(reference.identity, r)
            for r in records1
            if r.finished_at < killed_at - JOURNAL_MARGIN_S
        }
        assert not (out / "sample.dubbed.mkv").exists()

        stored = stored_keys(cache, all_keys)
        assert set(run1) <= all_keys and len(run1) == len(set(run1)), "run 1 paid for a line twice"
        assert stored <= set(run1)
        assert 1 <= len(stored) < len(all_keys), f"the kill did not land mid-synthesis ({len(stored)} stored)"
        unanswered = set(run1) - answered  # in flight at the kill: the service answered a dead process
        assert unanswered, "no request was in flight at the kill"
        assert len(unanswered) <= len(LANGS) * CONCURRENCY

        # A crash between writing the audio and its metadata, or a disk error, can leave a broken entry;
        # an interrupted atomic write leaves a `.tmp-*` file. Neither may be trusted.
        truncated = sorted(stored)[0]
        wav = ClipCache(cache)._paths(truncated)[0]
        wav.write_bytes(wav.read_bytes()[: wav.stat().st_size // 2])
        unstored = sorted(all_keys - set(run1) or all_keys - stored)[0]  # never requested, if any
        stray = ClipCache(cache)._paths(unstored)[0]
        stray.parent.mkdir(parents=True, exist_ok=True)
        stray_tmp = stray.with_name(f".tmp-{unstored}-crash1.wav")
        shutil.copyfile(ClipCache(cache)._paths(sorted(stored)[-1])[0], stray_tmp)
        trusted = stored - {truncated}
        tmp_before = tmp_files(out) | tmp_files(cache)

        server.reset()  # forget run 1's records and the delay
        proc = start_cli(args, env, logs / "run2")
        assert proc.wait(timeout=400) == 0, (logs / "run2" / "stderr").read_text()[-3000:]
        run2 = [clip_key_of(reference.identity, r) for r in billed_requests(server)]

    assert len(run2) == len(set(run2)), "run 2 paid for a line twice"
    assert not set(run2) & trusted, "run 2 synthesised a line whose clip was already stored"
    # the journal: nothing the killed run had received is paid again; every line never answered is
    # requested. The truncated clip is the exception by design: its answer had been stored (and so retired
    # from the journal) before the cache entry broke, so it is synthesised again
    assert truncated in run2
    assert not set(run2) & (answered - {truncated}), "run 2 paid again for an answer the killed run had"
    assert set(run2) >= all_keys - set(run1), "run 2 left lines unsynthesised"
    paid_twice = set(run1) & set(run2)
    assert paid_twice <= unanswered | {truncated}  # else only lines not yet answered at the kill
    print(
        f"kill -9 figures: lines={len(all_keys)} run1_billed={len(run1)} answered_before_kill={len(answered)}"
        f" stored={len(stored)} run2_billed={len(run2)} paid_twice={len(paid_twice)}"
        f" (of which the truncated entry: {int(truncated in paid_twice)})"
        f" (in flight at the kill: {len(unanswered)})"
    )
    assert stored_keys(cache, all_keys) == all_keys

    video = out / "sample.dubbed.mkv"
    audio = [s for s in ffprobe_streams(video) if s["codec_type"] == "audio"]
    assert [s.get("tags", {}).get("language") for s in audio] == ["eng", "jpn", "kor"]  # 1 original + 2 dubs
    assert_same_outputs(out, reference.out)
    assert tmp_files(out) | tmp_files(cache) <= tmp_before, "run 2 left temporary files behind"


# --------------------------------------------------------------------------------- transient faults


FAULT_RATES = {429: 0.2, 500: 0.1}


def draws_of(seed: int, rates: dict[int, float], successes: int) -> Counter:
    """The faults LoopbackDashScope.fault_rate(kind, rates, seed) injects before `successes` requests of that
    kind have got through: one random.Random(seed).random() per request, compared with the cumulative
    probabilities in status order (its documented reproducible pattern)."""
    rng, faults, ok = __import__("random").Random(seed), Counter(), 0
    while ok < successes:
        draw, threshold = rng.random(), 0.0
        for status, p in sorted(rates.items()):
            threshold += p
            if draw < threshold:
                faults[status] += 1
                break
        else:
            ok += 1
    return faults


def seed_for(calls: int, most: int, start: int = 0) -> tuple[int, Counter]:
    """A seed whose draw sequence injects both statuses, `most` faults in all: fewer than the retry policy's
    attempts, so no interleaving of the parallel calls can fail a line, whichever calls the faults hit."""
    for seed in range(start, start + 10_000):
        faults = draws_of(seed, FAULT_RATES, calls)
        if sum(faults.values()) == most and min(faults[s] for s in FAULT_RATES) >= 2:
            return seed, faults
    raise AssertionError("no suitable seed")


def test_transient_faults_cost_nothing_extra(
    reference: Reference, sample_video: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """429 at 20 % and 500 at 10 % on TTS and Qwen-MT plus a small delay, with the production retry policy
    (6 attempts, full-jitter backoff) on a 10 ms base: the flow succeeds, every line is billed exactly once
    (the clean run's total) and the output equals the clean run's.

    The seeds are chosen so that each kind sees exactly 5 faults (both statuses): at these rates 6 faults on
    one line (p = 0.3^6 per line) would fail the job about 2 % of the time, a flaky test rather than a bug."""
    from core.config import build_config
    from core.retry import RetryPolicy
    from flows.dub import dub

    calls = len(reference.keys)  # lines x languages: as many TTS as Qwen-MT calls (the source is not asked)
    most = RetryPolicy().max_attempts - 1
    tts_seed, tts_faults = seed_for(calls, most)
    mt_seed, mt_faults = seed_for(calls, most, start=tts_seed + 1)
    with LoopbackDashScope() as server:
        monkeypatch.setenv("DASHSCOPE_HTTP_BASE_URL", server.base_http_api_url)
        monkeypatch.setenv("DASHSCOPE_API_KEY", server.api_key)
        server.fault_rate("tts", FAULT_RATES, seed=tts_seed)
        server.fault_rate("mt", FAULT_RATES, seed=mt_seed)
        server.delay("tts", 0.02)
        config = build_config(
            video=sample_video, langs=",".join(LANGS), out=tmp_path / "out", cache_dir=tmp_path / "cache",
            separator="none", segments=reference.segments, concurrency=4, retry_base_delay_s=0.01,
        )  # fmt: skip
        result = dub(config)
        tts, mt = server.requests_of("tts"), server.requests_of("mt")
        billed_total = server.billed_characters_total
        billed = billed_requests(server)

    assert result.video is not None and result.video.is_file()
    assert Counter(r.status for r in tts if r.injected) == tts_faults  # the faults did happen, all retried
    assert Counter(r.status for r in mt if r.injected) == mt_faults
    assert Counter((lang_code(r), r.body["input"]["text"]) for r in billed) == reference.tts_texts
    assert billed_total == reference.billed_total
    assert len([r for r in mt if r.status == 200]) == calls  # one translation per line and language
    assert_same_outputs(tmp_path / "out", reference.out)


# --------------------------------------------------------------------------------------------- Ctrl-C


def test_ctrl_c_stops_promptly_with_one_line_and_no_output(
    reference: Reference, sample_video: Path, tmp_path: Path
) -> None:
    """SIGINT to the CLI's process group mid-synthesis (what a terminal sends on Ctrl-C, to the temporary
    Prefect server too): exit 130 within seconds, `error: interrupted ...` as the last line, no final
    video, nothing left running, and the clips finished so far kept in the cache for the re-run."""
    out, cache, logs = tmp_path / "out", tmp_path / "cache", tmp_path / "logs"
    args = [
        str(sample_video), "--langs", ",".join(LANGS), "--separator", "none",
        "--segments", str(reference.segments), "--out", str(out), "--cache-dir", str(cache),
        "--concurrency", str(CONCURRENCY),
    ]  # fmt: skip
    with LoopbackDashScope() as server:
        server.delay("tts", TTS_DELAY_S)
        proc = start_cli(args, cli_env(server, tmp_path), logs)
        wait_for(lambda: server.count("tts") >= 3, "3 TTS answers", 300, proc, logs)
        os.killpg(proc.pid, signal.SIGINT)
        try:
            code = proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            pytest.fail("still running 30 s after Ctrl-C:\n" + (logs / "stderr").read_text()[-2000:])
    stderr = (logs / "stderr").read_text()
    assert code == 130, stderr[-3000:]
    last = stderr.strip().splitlines()[-1]
    assert last.startswith("error: interrupted"), last
    assert "Traceback" not in stderr
    assert not (out / "sample.dubbed.mkv").exists()
    wait_for(lambda: not group_alive(proc.pid), "the interrupted process group to be gone", 10)
    assert stored_keys(cache, set(reference.keys)), "no finished clip was kept for the re-run"


# ------------------------------------------------------------------------------------------ disk full


def test_full_disk_is_one_clear_line_and_no_partial_output(
    reference: Reference, sample_video: Path, tmp_path: Path
) -> None:
    """The output folder and cache live on a real, tiny tmpfs (mounted in a private user+mount namespace,
    so no privilege is needed) that fills up mid-run: one `error: no space left on device ...` line, a
    non-zero exit, no traceback, no final video and no temporary file left on the full filesystem."""
    disk = tmp_path / "disk"
    disk.mkdir()
    work = reference.out / "work"
    # room for the extracted audio and a little more: the disk fills while clips are being stored
    size_kib = (sum((work / n).stat().st_size for n in ("audio.wav", "analysis.wav")) >> 10) + 384
    out, cache = disk / "out", disk / "cache"
    args = [
        str(sample_video), "--langs", ",".join(LANGS), "--separator", "none",
        "--segments", str(reference.segments), "--out", str(out), "--cache-dir", str(cache),
    ]  # fmt: skip
    with LoopbackDashScope() as server:
        proc = subprocess.run(
            ["unshare", "--user", "--map-root-user", "--mount", "sh", "-c", ON_A_TINY_DISK, "sh",
             str(size_kib), str(disk), sys.executable, "-m", "flows.dub", *args],
            cwd=ROOT, env=cli_env(server, tmp_path), capture_output=True, text=True, timeout=400,
        )  # fmt: skip
        synthesized = server.count("tts")
    assert proc.returncode != 97, f"cannot mount a private tmpfs (user namespaces needed): {proc.stderr}"
    assert proc.returncode not in (0, 130), proc.stderr[-3000:]
    errors = [ln for ln in proc.stderr.splitlines() if ln.startswith("error: ")]
    assert errors, proc.stderr[-3000:]
    assert errors[-1].startswith("error: no space left on device"), errors[-1]
    assert "Traceback" not in proc.stderr
    assert synthesized >= 1  # it filled up mid-run, after paid calls had started
    left = proc.stdout.split("left-behind:\n", 1)[1].split()
    assert not left, f"the failed run left files behind: {left}"


# Mount a tmpfs of $1 KiB on $2, run the rest of the arguments, then list what a failed run must never
# leave (a final video, a temporary file) before the namespace and its tmpfs vanish.
ON_A_TINY_DISK = """
mount -t tmpfs -o size="$1"k tmpfs "$2" || exit 97
disk="$2"; shift 2
"$@"; rc=$?
echo "left-behind:"
find "$disk" \\( -name '.tmp-*' -o -name '*.dubbed.*' \\) -print
exit $rc
"""
