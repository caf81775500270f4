"""Bad input: one clear line on stderr, a non-zero exit, no traceback, no output file."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def run_cli(
    args: list[str], env_overrides: dict[str, str | None], timeout: int = 120
) -> subprocess.CompletedProcess:
    env = dict(os.environ)
    for key, value in env_overrides.items():
        if value is None:
            env.pop(key, None)
        else:
            env[key] = value
    return subprocess.run(
        [sys.executable, "-m", "flows.dub", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def assert_one_line_error(proc: subprocess.CompletedProcess, *needles: str) -> None:
    assert proc.returncode != 0
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("error: ")
    assert "Traceback" not in proc.stderr + proc.stdout
    for needle in needles:
        assert needle in lines[0], lines[0]


@pytest.fixture
def media(tmp_path: Path) -> dict[str, Path]:
    """A video without audio, an audio-only file, and a text file posing as a video."""
    silent_video = tmp_path / "no_audio.mp4"
    subprocess.run(
        [
            "ffmpeg",
            "-v",
            "error",
            "-f",
            "lavfi",
            "-i",
            "testsrc2=s=64x64:d=1",
            "-c:v",
            "libx264",
            str(silent_video),
        ],
        check=True,
    )
    audio_only = tmp_path / "speech.m4a"
    subprocess.run(
        ["ffmpeg", "-v", "error", "-f", "lavfi", "-i", "sine=d=1", "-c:a", "aac", str(audio_only)], check=True
    )
    fake = tmp_path / "notes.mp4"
    fake.write_text("this is not a video\n")
    return {"no_audio": silent_video, "audio_only": audio_only, "fake": fake}


KEY = {"DASHSCOPE_API_KEY": "sk-test"}


@pytest.mark.parametrize(
    ("case", "extra", "env", "needles"),
    [
        ("missing", [], KEY, ("not found",)),
        ("no_audio", [], KEY, ("no audio stream",)),
        ("audio_only", [], KEY, ("no video stream",)),
        ("fake", [], KEY, ("not a readable video",)),
        ("sample", ["--langs", "ja,xx"], KEY, ("unknown language", "'xx'")),
        ("sample", ["--voice", "Cheri"], KEY, ("unknown voice", "Cherry")),
        ("sample", [], {"DASHSCOPE_API_KEY": None}, ("DASHSCOPE_API_KEY",)),
        ("sample", ["--tts", "local", "--voice", "Cherry"], KEY, ("unknown Qwen3-TTS speaker",)),
        ("sample", ["--voice-design", "a calm voice"], KEY, ("--voice-design needs the local route",)),
        ("sample", ["--clone", "narrator"], KEY, ("--clone needs --consent-dir",)),
        (
            "sample",
            ["--clone", "narrator", "--consent-dir", "no-such-ledger", "--clone-use", "dubbing"],
            KEY,
            ("consent ledger",),
        ),
        ("sample", ["--instructions", "Speak slowly."], KEY, ("needs an instruct model",)),
        (
            "sample",
            ["--separator", "htdemucs", "--demucs-model", "nope"],
            KEY,
            ("unknown demucs model 'nope'",),
        ),
    ],
)
def test_bad_input_is_one_line_and_leaves_no_output(
    case: str, extra: list[str], env: dict, needles: tuple[str, ...], media: dict[str, Path], tmp_path: Path
) -> None:
    video = {"missing": tmp_path / "missing.mp4", "sample": ROOT / "media_samples" / "sample.mp4", **media}[
        case
    ]
    out = tmp_path / "out"
    separator = [] if "--separator" in extra else ["--separator", "none"]
    args = [str(video), "--langs", "ja", "--out", str(out), *separator, *extra]
    if "--langs" in extra:
        args = [str(video), "--out", str(out), *separator, *extra]
    proc = run_cli(args, env)
    assert_one_line_error(proc, *needles)
    assert not out.exists() or not any(out.iterdir()), "a failed run left output behind"


def test_unwritable_output_folder(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    proc = run_cli(
        [
            str(ROOT / "media_samples" / "sample.mp4"),
            "--langs",
            "ja",
            "--separator",
            "none",
            "--out",
            str(blocker / "sub"),
        ],
        KEY,
    )
    assert_one_line_error(proc, "cannot write to output folder")


def test_help_is_instant_and_lists_every_flag() -> None:
    start = time.perf_counter()
    proc = run_cli(["--help"], {})
    elapsed = time.perf_counter() - start
    assert proc.returncode == 0
    for flag in [
        "--langs",
        "--out",
        "--voice",
        "--tts",
        "--translator",
        "--asr-model",
        "--separator",
        "--region",
    ]:
        assert flag in proc.stdout
    # a generous bound for a loaded CI machine; the point is that Prefect/torch are not imported
    assert elapsed < 3.0, f"--help took {elapsed:.2f}s"
    proc = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "flows.dub", "--help"],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    heavy = [
        m
        for m in ("prefect", "torch", "dashscope", "faster_whisper")
        if f" {m}\n" in proc.stderr or f"| {m}" in proc.stderr
    ]
    assert not heavy, f"--help imported {heavy}"


def test_list_voices_prints_the_catalogue() -> None:
    proc = run_cli(["--list-voices"], {})
    assert proc.returncode == 0
    assert "Cherry" in proc.stdout and "Ono Anna" in proc.stdout and "Cantonese" in proc.stdout
    assert len([ln for ln in proc.stdout.splitlines() if ln.strip()]) == 1 + 48
