"""The confinement the robustness suite relies on really confines."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from confined import confined


def test_dropping_dac_capabilities_really_denies_a_mode_000_file(tmp_path: Path) -> None:
    """The mechanism every "unreadable" case relies on (see confined.py)."""
    secret = tmp_path / "secret"
    secret.write_text("hidden")
    secret.chmod(0)
    code = "import sys; print(open(sys.argv[1]).read())"
    allowed = subprocess.run(
        confined([sys.executable, "-c", code, str(secret)]),
        capture_output=True,
        text=True,
        check=False,
    )
    denied = subprocess.run(
        confined([sys.executable, "-c", code, str(secret)], drop_dac=True),
        capture_output=True,
        text=True,
        check=False,
    )
    assert allowed.returncode == 0 and allowed.stdout == "hidden\n"
    assert denied.returncode != 0 and "PermissionError" in denied.stderr


def test_the_address_space_limit_stops_a_runaway_allocation() -> None:
    code = "b = bytearray(2 << 30)"
    result = subprocess.run(
        confined([sys.executable, "-c", code]), capture_output=True, text=True, check=False
    )
    assert result.returncode != 0 and "MemoryError" in result.stderr
