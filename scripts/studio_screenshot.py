"""Make docs/studio.png, the README's picture of the review studio: the sample dubbed into ja, en and ko by
the real flow on the test suite's loopback DashScope route (no key, nothing paid), opened in the studio
and photographed by Debian's Chromium through Playwright: line 2 playing in Japanese (paused in its middle,
its caption showing), the line table in Korean.

    python scripts/studio_screenshot.py [--out docs/studio.png]

Needs what the studio's browser tests need (scripts/install_system_packages.sh: chromium and a CJK font,
without which the Japanese and Korean text shows as empty boxes). A temporary Prefect server is started
when PREFECT_API_URL is not set.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "studio.png")
    args = parser.parse_args(argv)
    from playwright.sync_api import sync_playwright

    from tests.studio_support import base_job, studio

    chromium = shutil.which("chromium") or "/usr/bin/chromium"
    truth = json.loads((ROOT / "media_samples" / "sample.truth.json").read_text())
    with tempfile.TemporaryDirectory(prefix="studio-shot-") as scratch:
        job = base_job(ROOT / "media_samples" / "sample.mp4", truth, Path(scratch))
        with studio(job) as server, sync_playwright() as p:
            browser = p.chromium.launch(
                executable_path=chromium, args=["--no-sandbox", "--autoplay-policy=no-user-gesture-required"]
            )
            page = browser.new_context(viewport={"width": 1400, "height": 1000}).new_page()
            page.goto(server.url)
            page.wait_for_selector("body[data-ready='1']", timeout=30_000)
            page.locator('.block[data-lang="ja"][data-index="2"]').click()
            page.wait_for_function("() => document.getElementById('player').dataset.playing === 'ja:2'")
            page.wait_for_function("() => document.getElementById('player').currentTime > 9.2")
            page.evaluate("() => document.getElementById('player').pause()")
            page.select_option("#table-lang", "ko")
            page.locator('.block[data-lang="ja"][data-index="2"]').focus()
            page.wait_for_timeout(500)  # the caption and the playhead settle
            args.out.parent.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(args.out), full_page=True)
            browser.close()
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
