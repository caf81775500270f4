"""Consent bound to a voice: the voice print a consent record carries, and the check that the voice a job is
about to clone is that voice.

    print_ = voice_print_of(sample)                  # `consent add --sample FILE`: stored in the record
    score = check_voice(grant, reference_wav, "S2")   # at job time, before any model load or API call

A voice print is the speaker embedding (models.speaker_embedding, resemblyzer's bundled GE2E encoder) of
the sample recording given at enrollment, stored in the record with the encoder's name and the sample's
sha256; the audio itself is kept only with `--keep-sample` (when the signed consent covers keeping it). At
job time the reference chosen from the cloned speaker's lines (or --clone-ref) is embedded and compared: a
cosine similarity below MATCH_THRESHOLD refuses the clone with one ConsentError line (exit 2).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from cloning.ledger import ConsentError, ConsentGrant, ConsentRecord, VoicePrint, append_audit
from core.files import sha256_file

# Cosine similarity at or above which a reference is the record's voice. Measured with bench/voiceprint.py
# (16 espeak-ng voices x 8 texts; the enrollment sample against references of the other texts: 112 genuine
# and 1680 impostor pairs per condition). "clean": the reference as recorded (resampled to 24 kHz);
# "video": plus a short room echo and noise 30 dB below the speech.
#   threshold   FA clean  FR clean   FA video  FR video
#   0.80        31.5 %    0.0 %      11.6 %    17.0 %
#   0.85        19.9 %    0.0 %       0.9 %    75.9 %     <- chosen
#   0.88        11.4 %    6.3 %       0.0 %    97.3 %
#   0.90         5.8 %   25.9 %       0.0 %   100.0 %
# Equal error: 0.885 / 10.3 % clean, 0.794 / 13.5 % video. What separates: different espeak-ng voices whose
# base voice differs (en-us vs en, different formant sets); what does NOT: variants of one base voice (the
# en-gb m5/m7/Mike/f1 variants score 0.93 against each other, above same-voice pairs at 0.85-0.93). The
# synthetic voices are the only data measured here and are far closer to one another than people are; real
# voices should be re-measured before the figures are relied on. The choice leans to refusing: no false
# reject of a clean same-voice reference (--clone-ref with a clean recording always passes), few false
# accepts on degraded references, at the price of refusing most noisy/echoic references of the right voice
# (remedy: --clone-ref with a clean recording, or a sample recorded in the video's conditions).
MATCH_THRESHOLD = 0.85
VECTOR_DECIMALS = 6  # stored precision: a record stays small and its hash stable across platforms


def _readd_hint(speaker_id: str, ledger: Path) -> str:
    return (
        f"re-add it with a sample of their voice: python -m flows.consent add {speaker_id} --ledger {ledger} "
        "... --sample FILE --replace"
    )


def voice_print_of(sample: Path, *, kept: str | None = None) -> VoicePrint:
    """The voice print of a sample recording (3-60 s of the speaker alone, checked like a reference):
    its embedding, the encoder's name and the sample's sha256. `kept`: where the record keeps the audio."""
    from cloning.reference import _decode, validate_reference
    from models.speaker_embedding import EMBEDDING_MODEL, embed

    check = validate_reference(sample)
    audio, rate, _ = _decode(check.path)
    vector = embed(audio, rate)
    return VoicePrint(
        model=EMBEDDING_MODEL,
        vector=[round(float(x), VECTOR_DECIMALS) for x in vector],
        sample_sha256=sha256_file(check.path),
        sample_seconds=round(check.duration_s, 2),
        sample=kept,
    )


def require_voice_print(record: ConsentRecord, ledger: Path) -> VoicePrint:
    """The record's voice print, or the one-line ConsentError of a record made without one (or with
    another encoder, whose prints are not comparable)."""
    from models.speaker_embedding import EMBEDDING_MODEL

    voice_print = record.voice_print
    who = f"consent record {record.speaker_id!r}"
    if voice_print is None:
        raise ConsentError(
            f"{who} has no voice print, so cloning is refused; {_readd_hint(record.speaker_id, ledger)}"
        )
    if voice_print.model != EMBEDDING_MODEL:
        raise ConsentError(
            f"{who} has a voice print of another encoder ({voice_print.model}, this version uses "
            f"{EMBEDDING_MODEL}); {_readd_hint(record.speaker_id, ledger)}"
        )
    return voice_print


def similarity_to(voice_print: VoicePrint, reference_wav: Path) -> float:
    """Cosine similarity of a recording's voice print to a stored one."""
    from models.speaker_embedding import embed_file, similarity

    return similarity(np.asarray(voice_print.vector, dtype=np.float32), embed_file(Path(reference_wav)))


def check_voice(grant: ConsentGrant, reference_wav: Path, plan_speaker: str) -> float:
    """The similarity of the reference to the record's voice print; ConsentError (one line naming the plan
    speaker and the record) below MATCH_THRESHOLD. Either way a "voice_print_checked" entry is audited."""
    voice_print = require_voice_print(grant.record, grant.ledger)
    score = similarity_to(voice_print, reference_wav)
    matched = score >= MATCH_THRESHOLD
    append_audit(
        grant.ledger,
        {
            "event": "voice_print_checked",
            "speaker_id": grant.speaker_id,
            "plan_speaker": plan_speaker,
            "consent_record_hash": grant.record_hash,
            "reference_sha256": sha256_file(reference_wav),
            "model": voice_print.model,
            "similarity": round(score, 4),
            "threshold": MATCH_THRESHOLD,
            "status": "match" if matched else "mismatch",
        },
    )
    if not matched:
        whose = "every line's voice" if plan_speaker == "*" else f"the voice of speaker {plan_speaker}"
        raise ConsentError(
            f"{whose} does not match the voice print of consent record {grant.speaker_id!r} (similarity "
            f"{score:.2f} < {MATCH_THRESHOLD:.2f}): refusing to clone it"
        )
    return score
