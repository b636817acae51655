"""The reliability probe (benchmarks/faults.py) as a test: kill -9 at ten points, concurrent jobs, damaged
files, a full disk, bad images / tables / settings, a fake OpenAI server, hostile archives. Every case must
end identical, repaired or refused with a clear error; none silently wrong (about a minute)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_fault_probe_finds_nothing_silently_wrong(tmp_path):
    out = subprocess.run([sys.executable, str(REPO / "benchmarks" / "faults.py"), "--work", str(tmp_path)],
                         capture_output=True, text=True, timeout=600, cwd=REPO)
    lines = out.stdout.splitlines()
    totals = dict(line.split(": ", 1) for line in lines if line and ": " in line and " " not in line.split(": ")[0])
    bad = [line for line in lines if ": WRONG" in line or ": UNCLEAR" in line]
    assert out.returncode == 0 and not bad, "\n".join(bad) + out.stderr[-3000:]
    assert int(totals["silently_wrong"]) == 0 and int(totals["unclear_errors"]) == 0
    assert int(totals["cases_tried"]) >= 70
    assert int(totals["repaired"]) >= 15 and int(totals["identical_after_resume_or_correct"]) >= 20
    kills = [line for line in lines if line.startswith("kill -9 at")]
    assert len(kills) >= 8 and all(": identical" in line for line in kills)
