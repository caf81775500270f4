"""Command line for the voice-cloning consent ledger.

    python -m cloning.cli add SPEAKER --ledger DIR --name NAME --granted-by WHO --document FILE \\
        --langs en,ja --use "dubbing of channel X" [--use ...] --sample FILE [--keep-sample] \\
        [--granted-at WHEN] [--expires WHEN] [--replace]
    python -m cloning.cli list --ledger DIR
    python -m cloning.cli show SPEAKER --ledger DIR
    python -m cloning.cli check SPEAKER --ledger DIR --langs ja --use "dubbing of channel X"
    python -m cloning.cli renew SPEAKER --ledger DIR [--expires WHEN]
    python -m cloning.cli revoke SPEAKER --ledger DIR [--reason TEXT] [--cache-dir DIR]
    python -m cloning.cli verify --ledger DIR     # check both chains and every signed document
    python -m cloning.cli upgrade --ledger DIR    # read a ledger from before the chain into it, once
    python -m cloning.cli voices [--region intl|cn]

With $QWENDUB_LEDGER_KEY set, every ledger and audit entry is signed (HMAC-SHA256) and verified with it.

Like the dubbing CLI, every error is one `error: ...` line on stderr: exit 2 for user errors (bad input, no
or insufficient consent, missing key), 1 when the service failed.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from datetime import datetime
from pathlib import Path
from typing import NoReturn

from core.errors import DubError
from core.languages import LANGUAGES


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:  # one line, like every other error of the project
        self.exit(2, f"error: {message} (see python -m cloning.cli --help)\n")


def _when(value: str) -> datetime:
    from cloning.ledger import parse_when

    try:
        return parse_when(value)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="python -m cloning.cli",
        description="Manage the consent ledger that voice cloning requires.",
    )
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    ledger = _Parser(add_help=False)
    ledger.add_argument("--ledger", type=Path, required=True, metavar="DIR", help="consent ledger folder")

    add = sub.add_parser("add", parents=[ledger], help="record a speaker's consent")
    add.add_argument("speaker_id", metavar="SPEAKER", help="speaker id: 1-64 of A-Z a-z 0-9 _ -")
    add.add_argument("--name", required=True, help="the speaker's name")
    add.add_argument("--granted-by", required=True, help="who granted consent (the speaker or their agent)")
    add.add_argument(
        "--document", type=Path, required=True, metavar="FILE", help="the signed consent document"
    )
    add.add_argument(
        "--langs", required=True, help=f"permitted languages, comma-separated: {','.join(LANGUAGES)}"
    )
    add.add_argument(
        "--use", action="append", required=True, dest="uses", metavar="USE",
        help='a permitted use, e.g. "dubbing of channel X" (repeat for several)',
    )  # fmt: skip
    add.add_argument(
        "--sample", type=Path, metavar="FILE",
        help="a recording of the speaker alone (3-60 s of speech): its voice print binds the consent to "
        "their voice; without one, cloning is refused",
    )  # fmt: skip
    add.add_argument(
        "--keep-sample", action="store_true",
        help="keep the sample's audio in the ledger (only when the signed consent covers keeping it); "
        "by default only its voice print and sha256 are stored",
    )  # fmt: skip
    add.add_argument("--granted-at", type=_when, metavar="WHEN", help="ISO date or date-time (default: now)")
    add.add_argument("--expires", type=_when, metavar="WHEN", help="ISO date or date-time (default: never)")
    add.add_argument("--replace", action="store_true", help="supersede an existing record")

    sub.add_parser("list", parents=[ledger], help="list the ledger's records")

    show = sub.add_parser("show", parents=[ledger], help="print one record, its hash and its state")
    show.add_argument("speaker_id", metavar="SPEAKER")

    check = sub.add_parser("check", parents=[ledger], help="does consent cover these languages and use?")
    check.add_argument("speaker_id", metavar="SPEAKER")
    check.add_argument("--langs", required=True, help="languages, comma-separated")
    check.add_argument("--use", required=True, help="the use, worded as in the record")

    renew = sub.add_parser("renew", parents=[ledger], help="move a record's expiry (a signed renewal)")
    renew.add_argument("speaker_id", metavar="SPEAKER")
    renew.add_argument("--expires", type=_when, metavar="WHEN", help="new expiry (default: never)")

    revoke = sub.add_parser("revoke", parents=[ledger], help="revoke consent and delete the cloned voices")
    revoke.add_argument("speaker_id", metavar="SPEAKER")
    revoke.add_argument("--reason", help="why (kept in the record and the audit log)")
    revoke.add_argument(
        "--purge-outputs", action="store_true",
        help="also delete the finished deliverables (dubbed videos, stems) made with the voice",
    )  # fmt: skip
    revoke.add_argument(
        "--cache-dir", type=Path, metavar="DIR",
        help="the dubbing cache holding the cloned voices (default: $QWENDUB_CACHE_DIR or ~/.cache/qwen-dub)",
    )  # fmt: skip

    sub.add_parser(
        "verify", parents=[ledger],
        help="check the ledger's chain, its audit log and every signed document; names the first bad entry",
    )  # fmt: skip
    sub.add_parser(
        "upgrade", parents=[ledger],
        help="read a ledger from before the tamper-evident format into its chain (once)",
    )  # fmt: skip

    voices = sub.add_parser("voices", help="list the voices enrolled on the DashScope account")
    voices.add_argument("--region", choices=["intl", "cn"], default="intl")
    voices.add_argument("--page-size", type=int, default=100)
    return parser


def _split(value: str) -> list[str]:
    return [v.strip() for v in value.split(",") if v.strip()]


def _record_json(ledger: Path, speaker_id: str) -> dict[str, object]:
    from cloning.ledger import document_path, document_state, load_record, utc_now

    record = load_record(ledger, speaker_id)
    data = record.stored()
    if record.voice_print is not None:  # the vector is for the machine; show what it was made from
        data["voice_print"] = {
            **record.voice_print.model_dump(mode="json", exclude={"vector"}),
            "dimensions": len(record.voice_print.vector),
        }
    return {
        "record": data,
        "record_sha256": record.record_hash(),
        "status": record.status(utc_now()),
        "document": {
            "path": str(document_path(ledger, record)),
            "status": document_state(ledger, record),
        },
    }


def run(args: argparse.Namespace) -> int:
    from cloning import ledger as consent
    from cloning.chain import KEY_ENV

    if args.command == "add":
        record = consent.add_record(
            args.ledger,
            speaker_id=args.speaker_id,
            speaker_name=args.name,
            granted_by=args.granted_by,
            document=args.document,
            permitted_languages=_split(args.langs),
            permitted_uses=args.uses,
            granted_at=args.granted_at,
            expires_at=args.expires,
            replace=args.replace,
            sample=args.sample,
            keep_sample=args.keep_sample,
        )
        bound = "with a voice print" if record.voice_print else "WITHOUT a voice print: cloning is refused"
        print(f"consent recorded: {record.speaker_id} ({record.record_hash()[:12]}), {bound}")
        return 0
    if args.command == "list":
        now = consent.utc_now()
        rows = consent.list_records(args.ledger)
        if not rows:
            print(f"no consent records in {args.ledger}")
        for speaker_id, row, problem in rows:
            if row is None:
                print(f"{speaker_id:<24} malformed  {problem}")
                continue
            expires = row.expires_at.date().isoformat() if row.expires_at else "never"
            voice = "voice-print" if row.voice_print else "no-print"
            print(
                f"{speaker_id:<24} {row.status(now):<10} langs={','.join(row.permitted_languages):<20} "
                f"expires={expires:<10} {voice:<11} {row.speaker_name}"
            )
        return 0
    if args.command == "show":
        print(json.dumps(_record_json(args.ledger, args.speaker_id), ensure_ascii=False, indent=2))
        return 0
    if args.command == "check":
        grant = consent.check_consent(args.ledger, args.speaker_id, _split(args.langs), args.use)
        note = "" if grant.document_present else "; the signed document is missing"
        print(
            f"consent covers {','.join(grant.languages)} for {grant.use!r} ({grant.record_hash[:12]}){note}"
        )
        return 0
    if args.command == "revoke":
        from cloning.revoke import raise_if_incomplete, revoke_speaker

        cache_dir = args.cache_dir
        if cache_dir is None:
            from core.config import default_cache_dir

            cache_dir = default_cache_dir()
        result = revoke_speaker(
            args.ledger, args.speaker_id, args.reason, cache_dir, purge_outputs=args.purge_outputs
        )
        state = "revoked" if result.newly_revoked else "already revoked"
        print(f"consent {state}: {args.speaker_id}")
        print(f"deleted local clone prompts: {len(result.deleted_prompts)}")
        for voice in result.deleted_voices:
            print(f"deleted API voice: {voice}")
        if result.purged_clips:
            print(f"deleted cached clips: {result.purged_clips}")
        if result.deleted_job_files:
            print(f"deleted files in job folders: {len(result.deleted_job_files)}")
        for output in result.outputs:
            state = "deleted" if output in result.purged_outputs else "kept (delete with --purge-outputs)"
            print(f"deliverable made with the voice: {output}: {state}")
        for problem in result.undeleted:
            print(f"not deleted: {problem}")
        raise_if_incomplete(result)
        return 0
    if args.command == "renew":
        renewed = consent.renew_record(args.ledger, args.speaker_id, args.expires)
        until = renewed.expires_at.isoformat() if renewed.expires_at else "never expires"
        print(f"consent renewed: {renewed.speaker_id} ({renewed.record_hash()[:12]}), {until}")
        return 0
    if args.command == "verify":
        verified = consent.verify_ledger(args.ledger)
        signed = "signed" if verified.signed else f"not signed (set {KEY_ENV} to sign new entries)"
        counts = f"{verified.events} ledger event(s), {verified.audit_entries} audit entries"
        print(f"ledger verifies: {counts}, {signed}")
        for speaker_id, state in verified.documents.items():
            print(f"document of {speaker_id}: {state}")
        return 0
    if args.command == "upgrade":
        records, entries = consent.upgrade_ledger(args.ledger)
        print(f"ledger upgraded: {records} record(s) and {entries} audit entries chained")
        return 0
    if args.command == "voices":
        from models.dashscope_voice_clone import VoiceEnrollment

        for item in VoiceEnrollment(region=args.region).list(page_size=args.page_size):
            print(f"{item.get('voice')}  {item.get('target_model', '')}  {item.get('gmt_create', '')}")
        return 0
    raise AssertionError(f"unhandled command {args.command}")


def main(argv: list[str] | None = None) -> int:
    logging.getLogger().addHandler(logging.NullHandler())  # warnings stay off the one-line output
    args = build_parser().parse_args(argv)
    try:
        return run(args)
    except DubError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    except OSError as exc:
        print(f"error: {exc.strerror or exc} ({getattr(exc, 'filename', '') or ''})", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
