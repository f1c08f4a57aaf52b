"""--serve in a real browser: headless Chromium (Debian's chromium; .ci/run installs it; skipped
with the reason where there is none) opens the page of a running ``rtseg run --serve 127.0.0.1:0``,
and the screenshot shows the overlay (not a blank or broken image) and the side panel, and the DOM
after the script ran holds the figures, the legend and the class chart's shares."""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = [pytest.mark.slow, pytest.mark.skipif(CHROMIUM is None, reason="no Chromium here (apt-get install chromium)")]
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]


@pytest.fixture
def served(tmp_path):
    """rtseg run on the demo clip, served on a free loopback port, lingering after the last frame."""
    from rtseg.bundled import DEMO_CLIP

    cmd = [sys.executable, "-m", "rtseg.cli", "run", str(DEMO_CLIP), "--runtime", "pytorch", "--size", "180x240",
           "--serve", "127.0.0.1:0", "--serve-linger", "25", "-o", str(tmp_path / "o.mp4"), "-q"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=tmp_path,
                            env={**os.environ, "COLUMNS": "300"})
    url, deadline = None, time.monotonic() + 120
    while url is None and time.monotonic() < deadline:
        line = proc.stdout.readline()
        m = re.search(r"serving the live view at (http://127\.0\.0\.1:\d+/)", line)
        url = m.group(1) if m else None
        assert line or proc.poll() is None, proc.stderr.read()
    assert url, "no URL printed"
    yield url
    proc.terminate()
    proc.wait(timeout=30)


def _chromium(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([CHROMIUM, *FLAGS, f"--user-data-dir={tmp_path / 'profile'}", "--window-size=1200,700",
                           "--virtual-time-budget=4000", *args], capture_output=True, text=True, timeout=120)


def test_the_page_shows_the_overlay_the_figures_and_the_chart(served, tmp_path):
    time.sleep(1.0)  # some frames in
    shot = tmp_path / "page.png"
    proc = _chromium(tmp_path, f"--screenshot={shot}", served)
    assert shot.is_file(), proc.stderr[-2000:]
    page = cv2.imread(str(shot))
    view = page[20:580, 20:780]  # where the overlay is drawn
    assert view.std() > 25 and len(np.unique(view.reshape(-1, 3)[::97], axis=0)) > 50  # a picture, not a blank
    assert page[20:600, 830:1180].std() > 10  # the side panel: text, the chart, the legend
    dom = _chromium(tmp_path, "--dump-dom", served).stdout
    assert re.search(r'id="fps">\d+\.\d<', dom) and re.search(r'id="frames">\d+ / 101<', dom)
    assert "Road" in dom and re.search(r"Road \d+\.\d%", dom)  # the legend with the chart's shares
