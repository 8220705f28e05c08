"""`make test` looks for Chromium first (tests/find_chromium.sh): found, or a clear stop at once."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).with_name("find_chromium.sh")


def _bin_without_browser(tmp_path: Path) -> Path:
    """A PATH with the shell tools the script uses and no browser, apt-get or sudo."""
    d = tmp_path / "bin"
    d.mkdir()
    for name in ("bash", "id", "cat", "timeout", "python3"):
        target = shutil.which(name) or (sys.executable if name == "python3" else None)
        assert target, name
        (d / name).symlink_to(target)
    return d


def test_no_browser_stops_at_once_with_the_fix(tmp_path):
    env = {"PATH": str(_bin_without_browser(tmp_path)), "HOME": str(tmp_path),
           "TRANSFER_NO_INSTALL": "1"}
    r = subprocess.run(["bash", str(SCRIPT), "--early", ".venv/bin/python"], env=env,
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 2
    assert r.stdout == ""
    assert "apt-get install chromium" in r.stderr
    assert ".venv/bin/python -m playwright install chromium" in r.stderr
    assert "CHROMIUM=" in r.stderr


def test_a_given_browser_is_used(tmp_path):
    fake = tmp_path / "my-chrome"
    fake.write_text("#!/bin/sh\n")
    fake.chmod(0o755)
    env = dict(os.environ, CHROMIUM=str(fake))
    r = subprocess.run(["bash", str(SCRIPT), sys.executable], env=env, capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == str(fake)


def test_a_wrong_browser_path_is_refused(tmp_path):
    env = dict(os.environ, CHROMIUM=str(tmp_path / "missing"))
    r = subprocess.run(["bash", str(SCRIPT), sys.executable], env=env, capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == 2
    assert "is not an executable file" in r.stderr
