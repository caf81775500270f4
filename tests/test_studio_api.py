"""The review studio's JSON API over a job made by the real flow (loopback DashScope): what it lists,
edits written to the files the command line reads, and every refusal (not a job, corrupt file, locked
job, paths outside the job, missing token, cross-site writes) as a 4xx with its reason, nothing lost."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from tests.studio_support import LANGS, base_job, copy_job, studio

pytestmark = pytest.mark.e2e
ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def made_job(prefect_harness, sample_video: Path, sample_truth: dict, tmp_path_factory) -> Path:
    return base_job(sample_video, sample_truth, tmp_path_factory.mktemp("studio-base"))


@pytest.fixture
def job(made_job: Path, tmp_path: Path) -> Path:
    return copy_job(made_job, tmp_path / "job")


def call(
    url: str, method: str = "GET", body: Any = None, headers: dict[str, str] | None = None
) -> tuple[int, Any, dict[str, str]]:
    data = None if body is None else json.dumps(body).encode()
    sent = {"Content-Type": "application/json", "X-Studio": "1"} if body is not None else {}
    request = urllib.request.Request(url, data=data, method=method, headers={**sent, **(headers or {})})

    class NoRedirect(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, *args: Any, **kwargs: Any) -> None:
            return None

    opener = urllib.request.build_opener(NoRedirect)
    try:
        with opener.open(request) as response:
            raw, status, got = response.read(), response.status, dict(response.headers)
    except urllib.error.HTTPError as exc:
        raw, status, got = exc.read(), exc.code, dict(exc.headers)
    try:
        return status, json.loads(raw or b"null"), got
    except ValueError:
        return status, raw.decode("utf-8", "replace"), got


def snapshot(job: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in job.iterdir() if p.suffix == ".json"}


def test_lines_lists_every_line_of_every_language(job: Path) -> None:
    plan = json.loads((job / "segments.json").read_text())["lines"]
    with studio(job) as server:
        status, view, _ = call(server.url + "api/lines")
    assert status == 200
    assert [ln["index"] for ln in view["lines"]] == [ln["index"] for ln in plan]
    assert [ln["text"] for ln in view["lines"]] == [ln["text"] for ln in plan]
    assert list(view["languages"]) == LANGS
    report = json.loads((job / "report.json").read_text())
    for lang in LANGS:
        written = json.loads((job / f"lines.{lang}.json").read_text())["lines"]
        rows = view["languages"][lang]["lines"]
        assert [r["text"] for r in rows] == [w["text"] for w in written]
        speeds = {t["index"]: t["speed"] for t in report["tracks"][lang]["lines_timing"]}
        assert [r["speed"] for r in rows] == [speeds[r["index"]] for r in rows]
        for row, line in zip(rows, written, strict=True):  # a state for every flag the files hold
            assert ("shortened" in row["states"]) == (line["shortened"] > 0)
            assert ("unkept" in row["states"]) == bool(line["unkept"])
            assert ("sped" in row["states"]) == (speeds[row["index"]] > 1.15)
            assert row["state"] == (row["states"] or ["fine"])[0]


def test_edits_go_to_the_files_the_command_line_reads(job: Path) -> None:
    from tasks.segment import load_plan
    from tasks.translate import user_edits

    with studio(job) as server:
        status, _, _ = call(server.url + "api/lines/1", "PATCH", {"translations": {"ja": "  新しい 訳。 "}})
        assert status == 200
        status, view, _ = call(server.url + "api/lines/2", "PATCH", {"end": 10.2, "voice": "Ethan"})
        assert status == 200
        status, view, _ = call(server.url + "api/lines/1", "PATCH", {"approved": {"ja": True}})
        assert status == 200
    _, lines = load_plan(job / "segments.json")
    assert user_edits(job / "lines.ja.json", lines) == ({1: "新しい 訳。"}, [])  # what the next run keeps
    assert lines[2].end == 10.2 and lines[2].voice == "Ethan"
    assert lines[2].pause_after == pytest.approx(lines[3].start - 10.2, abs=1e-3)
    ja = {r["index"]: r for r in view["languages"]["ja"]["lines"]}
    assert ja[1]["state"] == "approved" and "edited" in ja[1]["states"]
    assert all("edited" in view["languages"][lang]["lines"][2]["states"] for lang in LANGS)
    review = json.loads((job / "review.json").read_text())
    assert review["changed"]["ja"] == [1, 2] and review["changed"]["ko"] == [2]


def test_a_bad_edit_is_refused_with_its_reason_and_nothing_is_written(job: Path) -> None:
    before = snapshot(job)
    with studio(job) as server:
        cases = [
            ({"end": 0.5}, 422, "line 3 ends before it starts"),
            ({"start": 9.0}, 422, "starts before line 2 ends"),
            ({"translations": {"ja": "   "}}, 422, "may not be empty"),
            ({"translations": {"de": "Hallo"}}, 400, "no language 'de'"),
            ({"voice": "NoSuchVoice"}, 422, "NoSuchVoice"),
            ({"text": "x"}, 400, "unknown field 'text'"),
            ({"start": "soon"}, 400, "must be a number"),
        ]
        for body, code, reason in cases:
            status, answer, _ = call(server.url + "api/lines/3", "PATCH", body)
            assert (status, reason in answer["error"]) == (code, True), (body, answer)
        status, answer, _ = call(server.url + "api/lines/99", "PATCH", {"end": 1.0})
        assert status == 404 and "no line 99" in answer["error"]
    assert snapshot(job) == before


def test_not_a_job_folder(tmp_path: Path) -> None:
    folder = tmp_path / "holiday-photos"
    folder.mkdir()
    (folder / "notes.txt").write_text("not a job")
    done = subprocess.run(
        [sys.executable, "-m", "flows.studio", str(folder), "--port", "0"],
        cwd=ROOT, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        "error: holiday-photos is not a job folder (no segments.json): open the folder a dub wrote, "
        "e.g. out/<video name>"
    ]
    with studio(folder) as server:  # a folder that is (or stopped being) no job: the API says why
        for path in ("api/status", "api/lines", "api/estimate", "media/video/ja.mp4"):
            status, answer, _ = call(server.url + path)
            assert status == 404 and "not a job folder" in answer["error"], path


def test_a_corrupt_lines_file_is_reported_and_never_rewritten(job: Path) -> None:
    broken = b'{"language": "ja", "lines": [{"index": 0, "text": '
    (job / "lines.ja.json").write_bytes(broken)
    with studio(job) as server:
        status, answer, _ = call(server.url + "api/lines")
        assert status == 422 and answer["error"].startswith("lines.ja.json is not valid")
        status, answer, _ = call(server.url + "api/lines/0", "PATCH", {"translations": {"ja": "x"}})
        assert status == 422 and "lines.ja.json is not valid" in answer["error"]
    assert (job / "lines.ja.json").read_bytes() == broken


HOLD = """
import sys, time
from pathlib import Path
from core.job_lock import job_lock
with job_lock(Path(sys.argv[1]), "dub"):
    print("held", flush=True)
    sys.stdin.read()
"""


def test_a_job_held_by_another_run_is_locked(job: Path) -> None:
    from core.job_lock import JobLockedError, job_lock

    before = snapshot(job)
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(job)],
        cwd=ROOT,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        with studio(job) as server:
            status, answer, _ = call(server.url + "api/status")
            assert status == 200 and f"pid {holder.pid}" in answer["job"]["locked"]
            status, answer, _ = call(server.url + "api/lines/0", "PATCH", {"translations": {"ja": "x"}})
            assert status == 423 and "being worked on by another run (dub" in answer["error"]
            status, answer, _ = call(server.url + "api/redub", "POST", {})
            assert status == 423
        with pytest.raises(JobLockedError), job_lock(job, "dub"):  # a second command-line run too
            pass
    finally:
        holder.communicate("", timeout=30)
    assert snapshot(job) == before
    with job_lock(job, "dub"):  # released when its holder ended
        pass


def test_nothing_outside_the_job_folder_is_served(job: Path, tmp_path: Path) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("do not serve me")
    with studio(job) as server:
        for path in (
            "static/../../secret.txt", "static/..%2f..%2fsecret.txt", "static/%2e%2e/%2e%2e/secret.txt",
            "media/video/..%2f..%2fsecret.txt", "media/captions/../../../secret.txt",
            "media/video/ja.mp4/../x",
            "segments.json", "work/config.json", "api/../secret.txt", f"static/{secret}",
        ):  # fmt: skip
            status, answer, _ = call(server.url + path)
            assert status == 404, path
            assert "do not serve me" not in json.dumps(answer)
        status, answer, _ = call(server.url + "media/video/de.mp4")
        assert status == 404 and "no track" in answer["error"]


def test_writes_need_the_page_and_elsewhere_a_token(job: Path) -> None:
    from webstudio.server import StudioServer

    with studio(job) as server:
        status, answer, _ = call(server.url + "api/lines/0", "PATCH", {"end": 3.0}, {"X-Studio": ""})
        assert status == 403  # a cross-site form cannot send the header
        status, answer, _ = call(
            server.url + "api/lines/0", "PATCH", {"end": 3.0}, {"Origin": "http://evil.example"}
        )
        assert status == 403
        status, _, _ = call(server.url + "api/status", headers={"Host": "evil.example"})
        assert status == 403  # DNS rebinding
    with pytest.raises(ValueError, match="needs a token"):
        StudioServer(job, "0.0.0.0", 0, None)
    token = "t0ken-for-the-studio-tests"
    with studio(job, token=token) as server:
        status, answer, _ = call(server.url + "api/status")
        assert status == 401 and "token" in answer["error"]
        status, _, headers = call(server.url + f"?token={token}")
        assert (
            status == 303 and headers["Location"] == "/" and f"studio_token={token}" in headers["Set-Cookie"]
        )
        assert call(server.url + "api/status", headers={"Cookie": f"studio_token={token}"})[0] == 200
        assert call(server.url + "api/status", headers={"Authorization": f"Bearer {token}"})[0] == 200
        assert call(server.url + "api/status", headers={"Authorization": "Bearer wrong"})[0] == 401


def test_logs_hold_no_script_text_and_no_token(job: Path, caplog: pytest.LogCaptureFixture) -> None:
    token = "another-t0ken-for-the-tests"
    text = "秘密の台詞はログに出ない"
    with caplog.at_level(logging.DEBUG), studio(job, token=token) as server:
        auth = {"Authorization": f"Bearer {token}"}
        call(server.url + f"?token={token}")
        call(server.url + "api/lines/0", "PATCH", {"translations": {"ja": text}}, auth)
        call(server.url + "api/lines", headers=auth)
    assert any("PATCH /api/lines/0 200" in r.getMessage() for r in caplog.records)
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert text not in logged and token not in logged


def test_estimate_counts_exactly_the_changed_lines(job: Path) -> None:
    from models.billing import billed_characters

    new = {
        "ja": "港の朝は静かです。",
        "en": "The harbour is quiet in the morning.",
        "ko": "항구의 아침은 조용합니다.",
    }
    with studio(job) as server:
        status, before, _ = call(server.url + "api/estimate")
        assert status == 200 and before["lines_to_synthesize"] == 0 and before["cost"] == 0
        call(server.url + "api/lines/4", "PATCH", {"translations": new})
        status, after, _ = call(server.url + "api/estimate", "POST", {})
    assert status == 200
    by_lang = {e["language"]: e for e in after["languages"]}
    for lang in LANGS:
        assert by_lang[lang]["lines_to_synthesize"] == 1 and by_lang[lang]["changed_lines"] == 1
        assert by_lang[lang]["characters"] == billed_characters(new[lang]) and by_lang[lang]["exact"]
    assert after["cost"] == pytest.approx(after["characters"] / 1e5)  # the flash model's price per character


def test_a_redub_runs_the_configured_deployment(
    prefect_harness, job: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With a deployment configured, POST /api/redub starts a run of it (run_deployment, the recorded
    options as `config`) that a `python -m flows.serve` process executes: exactly one synthesis request per
    changed line and language, the run holds the job's lock itself (the studio refuses edits meanwhile),
    and the API reports the deployment's flow run finished. An unknown deployment stops the command with
    one line."""
    import os
    import time

    from prefect.client.orchestration import get_client
    from prefect.settings import PREFECT_API_URL

    from tests.loopback_dashscope import LoopbackDashScope
    from tests.service_stop import stop_service

    name = "studio-redub"  # its own name: the session's server holds other tests' deployments too
    env = {**os.environ, "PREFECT_API_URL": str(PREFECT_API_URL.value())}
    done = subprocess.run(
        [sys.executable, "-m", "flows.studio", str(job), "--port", "0", "--deployment", f"dub/{name}"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 2 and done.stderr.splitlines() == [
        f"error: no deployment dub/{name} on the Prefect API at {env['PREFECT_API_URL']} "
        "(prefect deployment ls lists them)"
    ]
    # texts of its own: the clip cache is shared with the browser test, which types the harbour lines
    new = {"ja": "波止場は穏やかです。", "en": "The quay is quiet.", "ko": "부두는 고요합니다."}
    with LoopbackDashScope() as dashscope:
        env.update(DASHSCOPE_HTTP_BASE_URL=dashscope.base_http_api_url, DASHSCOPE_API_KEY=dashscope.api_key)
        # the studio's process gets no DashScope address: only the served run may synthesise
        monkeypatch.delenv("DASHSCOPE_HTTP_BASE_URL", raising=False)
        log = (tmp_path / "serve.log").open("w")
        serve = subprocess.Popen(
            [sys.executable, "-m", "flows.serve", "--name", name, "--limit", "1"],
            cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
        try:
            deadline = time.monotonic() + 120
            while True:
                with get_client(sync_client=True) as client:
                    try:
                        deployment = client.read_deployment_by_name(f"dub/{name}")
                        break
                    except Exception:  # noqa: BLE001 - ObjectNotFound until the service registers it
                        pass
                assert serve.poll() is None, (tmp_path / "serve.log").read_text()[-3000:]
                assert time.monotonic() < deadline, "the service did not register its deployment"
                time.sleep(0.5)
            with studio(job, deployment=f"dub/{name}") as server:
                assert call(server.url + "api/lines/4", "PATCH", {"translations": new})[0] == 200
                status, run, _ = call(server.url + "api/redub", "POST", {})
                assert status == 202 and run["state"] == "running"
                status, answer, _ = call(server.url + "api/lines/5", "PATCH", {"translations": {"ja": "x"}})
                assert status == 423 and "a re-dub is running" in answer["error"]
                deadline = time.monotonic() + 180
                while run["state"] == "running":
                    assert time.monotonic() < deadline, ((tmp_path / "serve.log").read_text()[-3000:], run)
                    time.sleep(0.5)
                    run = call(server.url + "api/status")[1]["redub"]
                status, view, _ = call(server.url + "api/lines")
            requests = dashscope.requests_of("tts")
        finally:
            stop_service(serve, tmp_path / "serve.log")
    served = (tmp_path / "serve.log").read_text()
    assert run["state"] == "completed" and run["message"] == "re-dubbed", (run, served[-3000:])
    # the page's progress, read from the run's logs (sent by the serving process every 2 s, long before
    # the run's assembly and remux end)
    assert {lang: done == total for lang, (done, total) in run["progress"].items()} == dict.fromkeys(
        LANGS, True
    )
    with get_client(sync_client=True) as client:
        flow_run = client.read_flow_run(run["flow_run_id"])
    assert flow_run.deployment_id == deployment.id and flow_run.state_name == "Completed"
    assert run["flow_run_name"] == flow_run.name == "dub-sample" and "studio" in flow_run.tags
    config = flow_run.parameters["config"]
    assert config["out"] == str(job.resolve()) and config["segments"] == str(job.resolve() / "segments.json")
    assert sorted(r.body["input"]["text"] for r in requests) == sorted(new.values())  # one per language
    for lang in LANGS:
        row = next(r for r in view["languages"][lang]["lines"] if r["index"] == 4)
        assert row["text"] == new[lang]
    assert json.loads((job / "review.json").read_text())["changed"] == {}
