"""scripts/run and scripts/test (issue 9.6): one install mode, no reinstall on a
warm start, and no network needed once .venv is complete."""

from __future__ import annotations

import os
import re
from pathlib import Path

from devsupport import run

ROOT = Path(__file__).resolve().parents[1]
STAMP = ROOT / ".venv" / ".atomchat-install"


def test_both_scripts_install_through_one_editable_install() -> None:
    installer = (ROOT / "scripts" / "install").read_text()
    assert re.findall(r"pip install [^\n]*", installer) == [
        "pip install --quiet --upgrade pip",
        'pip install --quiet -c constraints.txt -e ".[$extras]"',
    ]
    for script, extras in (("run", "local"), ("test", "dev,local")):
        text = (ROOT / "scripts" / script).read_text()
        assert f"scripts/install {extras}\n" in text
        assert "pip install" not in text


async def test_a_warm_run_installs_nothing_and_needs_no_network() -> None:
    before = STAMP.read_text()
    offline = {
        **os.environ,
        # Any index or download attempt fails at once.
        "PIP_INDEX_URL": "http://127.0.0.1:9/simple",
        "PIP_RETRIES": "0",
        "PIP_TIMEOUT": "1",
        "HTTPS_PROXY": "http://127.0.0.1:9",
        "HTTP_PROXY": "http://127.0.0.1:9",
    }
    result = await run(str(ROOT / "scripts" / "run"), "--help", env=offline, merge_output=True)
    assert result.returncode == 0, result.output
    assert "usage: atomchat serve" in result.output
    assert STAMP.read_text() == before
    # The checkout is the installed code: python -m bench and seed.py import it.
    imported = await run(
        str(ROOT / ".venv" / "bin" / "python"),
        "-c",
        "import atomchat_server.migrations, bench",
        merge_output=True,
    )
    assert imported.returncode == 0, imported.output
