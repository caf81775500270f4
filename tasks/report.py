"""The per-job report: report.json beside the output and a summary artifact in Prefect.

Neither holds script text (the lines files do); both hold timings, stretch, loudness and cost.
"""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

from prefect import task

from core.config import DubConfig
from core.files import write_json_atomic
from core.progress import stage_logger
from models.registry import tts_engine
from tasks.assemble import TrackResult
from tasks.media import STAGE

if TYPE_CHECKING:
    from cloning.session import CloneSession

DISCLOSURE = "Dubbed audio tracks are AI-generated (Qwen TTS); translation is machine-generated."


def disclosure(config: DubConfig, clone: CloneSession | None) -> str:
    """The AI disclosure the output's metadata and the report carry, naming the voice and the engine
    (the engine's own name from models/registry.py; a clone names its consent record, never a person)."""
    if clone is not None:
        return DISCLOSURE + clone.disclosure(config)
    engine = tts_engine(config.tts)
    voice = "designed voice" if config.voice_design else config.voice
    if config.cast:
        cast = ", ".join(f"{speaker}: {name}" for speaker, name in config.cast.items())
        voice = f"{cast}, others: {voice}" if voice else cast
    return DISCLOSURE + f" Voice: {voice} ({engine.label(config)})."


def track_summary(track: TrackResult, max_speedup: float) -> dict[str, Any]:
    n = max(len(track.timings), 1)
    within = sum(1 for t in track.timings if t.speed <= max_speedup + 1e-6 and t.truncated_s == 0)
    return {
        "lines": len(track.timings),
        "stretched": sum(1 for t in track.timings if t.speed > 1.0),
        "truncated": sum(1 for t in track.timings if t.truncated_s > 0),
        "share_within_cap": round(within / n, 4),
        "max_speed": max((t.speed for t in track.timings), default=1.0),
        "max_truncated_s": max((t.truncated_s for t in track.timings), default=0.0),
        "integrated_lufs": track.integrated_lufs,
        "true_peak_dbtp": track.true_peak_dbtp,
        "dialogue_gain_db": track.dialogue_gain_db,
    }


def build_report(
    *,
    job: dict[str, Any],
    source: dict[str, Any],
    tracks: list[TrackResult],
    synthesis: dict[str, dict[str, float]],
    outputs: dict[str, Any],
    stage_seconds: dict[str, float],
    cost: tuple[int, float, str],
    disclosure: str,
    max_speedup: float,
    verification: dict[str, Any] | None = None,
    translation: dict[str, dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """`cost`: (billed characters, amount, currency) as the engine prices them."""
    billed, amount, currency = cost
    return {
        "ai_disclosure": disclosure,
        "job": job,
        "source": source,
        "tracks": {
            t.language: {
                **track_summary(t, max_speedup),
                "synthesis": synthesis.get(t.language, {}),
                **(
                    {"translation": translation[t.language]}
                    if translation and t.language in translation
                    else {}
                ),
                **(
                    {"verify": verification[t.language]}
                    if verification and t.language in verification
                    else {}
                ),
                "lines_timing": [asdict(x) for x in t.timings],
            }
            for t in tracks
        },
        "cost": {"billed_characters": billed, "amount": round(amount, 6), "currency": currency},
        "outputs": outputs,
        "stage_seconds": {k: round(v, 3) for k, v in stage_seconds.items()},
    }


def studio_command(report: dict[str, Any]) -> str:
    """The command that opens the review studio on this job (flows/studio.py)."""
    import shlex

    segments = report.get("outputs", {}).get("segments")
    folder = Path(segments).resolve().parent if segments else Path("out") / Path(report["job"]["video"]).stem
    return f"python -m flows.studio {shlex.quote(str(folder))}"


def summary_markdown(report: dict[str, Any]) -> str:
    rows = [
        "| language | lines | stretched | truncated | within cap | shortened | unkept | LUFS | true peak "
        "| characters |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for lang, t in report["tracks"].items():
        unkept = len(t.get("translation", {}).get("unkept_lines", []))
        rows.append(
            f"| {lang} | {t['lines']} | {t['stretched']} | {t['truncated']} | {t['share_within_cap']:.0%} | "
            f"{int(t['synthesis'].get('shortened', 0))} | {unkept} | "
            f"{t['integrated_lufs']} | {t['true_peak_dbtp']} | "
            f"{int(t['synthesis'].get('billed_characters', 0))} |"
        )
    resynthesized = ", ".join(
        f"{lang} {float(t['synthesis'].get('resynthesized_share', 0.0)):.0%}"
        for lang, t in report["tracks"].items()
    )
    cost = report["cost"]
    stages = ", ".join(f"{name} {seconds:.1f} s" for name, seconds in report["stage_seconds"].items())
    cast: list[str] = []  # the cast (report.json `speakers`, tasks/cast.Casting.report): one row per speaker
    for speaker, s in (report.get("speakers") or {}).items():
        if not cast:
            cast = ["| speaker | lines | seconds | voice | cloned | chosen by |", "|---|---|---|---|---|---|"]
        who = f"{speaker} ({s['name']})" if s.get("name") else speaker
        cast.append(
            f"| {who} | {s.get('lines', 0)} | {float(s.get('seconds', 0.0)):.1f} | {s.get('voice', '')} | "
            f"{'yes' if s.get('cloned') else 'no'} | {s.get('chosen_by', '')} |"
        )
    return "\n".join(
        [
            f"# Dub of {report['job']['video']}",
            f"Output: `{report['outputs']['video']}`",
            "",
            *rows,
            "",
            *([*cast, ""] if cast else []),
            f"Lines synthesised more than once (goal <= 5 %): {resynthesized}",
            "",
            f"Billed characters this run: {cost['billed_characters']} ({cost['amount']} {cost['currency']})",
            "",
            f"Stage times: {stages}",
            "",
            "_shortened_: lines re-translated shorter to fit their slot; _unkept_: lines whose translation "
            "lost a number, unit or name (listed as `unkept` in lines.<lang>.json, worth a look)",
            "",
            f"_{report['ai_disclosure']}_",
            "",
            f"Review it (every line, every track; edit and re-dub what changed): `{studio_command(report)}`",
        ]
    )


@task(name="report", **STAGE)
def write_report(report: dict[str, Any], path: Path) -> Path:
    write_json_atomic(path, report)
    try:
        publish_artifacts(report)
    except Exception as exc:  # noqa: BLE001 - an artifact is a convenience; the report file is the record
        stage_logger().warning("artifacts not created: %s", type(exc).__name__)
    return path


def publish_artifacts(report: dict[str, Any]) -> None:
    """What the Prefect UI shows for a run: a summary, one timing table per language (no script
    text), and a link to the output file."""
    from prefect.artifacts import create_link_artifact, create_markdown_artifact, create_table_artifact

    create_markdown_artifact(summary_markdown(report), key="dub-summary", description="Dubbing job summary")
    for lang, track in report["tracks"].items():
        create_table_artifact(
            track["lines_timing"],
            key=f"dub-timing-{lang}",
            description=f"{lang}: per-line slot, clip length, speed factor and truncation (seconds)",
        )
    video = report["outputs"].get("video")
    if video:
        create_link_artifact(Path(video).resolve().as_uri(), link_text=Path(video).name, key="dub-output")
