"""Commands the compose tests run on the host (docker, docker-compose), and their log lines."""

from __future__ import annotations

import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def log(message: str) -> None:
    print(f"[compose-test] {message}", flush=True)


def run(*args: str, env: dict | None = None, timeout: float = 600, check: bool = True, quiet: bool = False):
    result = subprocess.run(args, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)
    if check and result.returncode != 0:
        raise AssertionError(f"{' '.join(args)} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}")
    if not quiet and result.returncode != 0:
        log(f"{' '.join(args)}: exit {result.returncode}: {result.stderr.strip()[-500:]}")
    return result
