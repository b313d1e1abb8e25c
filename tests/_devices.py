"""Running a script under two JAX host devices, for the tests that check the model axis split over devices."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any


def run_on_two_host_devices(script: str) -> dict[str, Any]:
    """Run ``script`` in a fresh Python process with two host devices (XLA_FLAGS), from the repository root, and
    return the JSON object its last output line prints (the process must exit 0)."""
    env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=2"}
    out = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
        env=env,
        cwd=Path(__file__).resolve().parents[1],
    )
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1])
