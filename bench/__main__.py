"""Run every benchmark and write docs/benchmarks.md (and the latency plot next to it).

    make bench            # or: DJANGO_DEBUG=1 python -m bench [--inference-only] [--only=attacks ...]

It trains a model into a temporary folder, starts its own redis-server, daphne and MLServer
processes on free loopback ports, and stops them at the end. It takes a few minutes on two cores
(the first run also builds MLServer's venv under .bench/).
"""

from __future__ import annotations

import os
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np

    from ml_engine.registry import ServedModel

ROOT = Path(__file__).resolve().parent.parent


def machine() -> str:
    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = ""
    try:
        kb = int(Path("/proc/meminfo").read_text().split()[1])
        mem = f", {kb / 1024 / 1024:.0f} GiB RAM"
    except (OSError, ValueError, IndexError):
        pass
    system = f"{platform.system()} {platform.release()}"
    return f"{cpu}, {os.cpu_count()} cores{mem}; {system}; Python {platform.python_version()}"


def prepare(work: Path) -> tuple[ServedModel, np.ndarray]:
    """Settings for a throw-away database and model folder in ``work``; a trained, active model.
    Returns the served model and the training rows."""
    os.environ.update(
        DJANGO_DEBUG="1",
        DJANGO_SETTINGS_MODULE="project.settings",
        DATABASE_URL=f"sqlite:///{work / 'db.sqlite3'}",
        MODEL_DIR=str(work / "models"),
    )
    sys.path.insert(0, str(ROOT))
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    with open(os.devnull, "w") as quiet:
        call_command("train", "--repeats", "1", stdout=quiet)

    from ml_engine.registry import active_model
    from ml_engine.training import load_dataset

    return active_model.get(), load_dataset().X


def main() -> int:
    work = Path(tempfile.mkdtemp(prefix="bench-"))
    served, rows = prepare(work)
    from ml_engine.schema import FEATURE_KEYS

    from . import attacks, inference, mlserver, report, shadow

    started = time.monotonic()
    only = {arg.removeprefix("--only=") for arg in sys.argv[1:] if arg.startswith("--only=")}

    def wanted(name: str) -> bool:
        return not only or name in only

    sections: dict = {"inference": inference.run(served=served, rows=rows)}
    if "--inference-only" not in sys.argv:
        keys = list(FEATURE_KEYS)
        runs = [
            ("mlserver", lambda work: mlserver.run(work=work, version=served.version, rows=rows, keys=keys)),
            *report.live_sections(),
            ("attacks", lambda work: attacks.run(work=work)),
            ("shadow", lambda work: shadow.run(work=work)),
        ]
        for name, run_section in runs:
            if wanted(name):
                print(f"{name} ...", flush=True)
                began = time.monotonic()
                sections[name] = run_section(work)
                print(f"{name}: {time.monotonic() - began:.0f} s", flush=True)
    # A partial run (--only) must not replace the full report in docs/.
    out = work / "docs" if only or "--inference-only" in sys.argv else ROOT / "docs"
    report.write(sections, machine=machine(), elapsed=time.monotonic() - started, out=out)
    print(f"wrote {out / 'benchmarks.md'} in {time.monotonic() - started:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
