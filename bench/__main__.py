"""Run every benchmark and write docs/benchmarks.md (and the latency plot next to it).

    make bench            # or: DJANGO_DEBUG=1 python -m bench [--inference-only]

It trains a model into a temporary folder, starts its own redis-server and daphne processes on
free loopback ports, and stops them at the end. It takes a few minutes on two cores.
"""

from __future__ import annotations

import os
import platform
import sys
import tempfile
import time
from pathlib import Path

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


def main() -> int:
    work = Path(tempfile.mkdtemp(prefix="bench-"))
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

    from ml_engine.registry import active_model, export_version
    from ml_engine.training import load_dataset

    from . import inference, report

    served = active_model.get()
    artifact = export_version(version=served.version, directory=work / "export") / "model.joblib"
    rows = load_dataset().X
    started = time.monotonic()
    sections = {"inference": inference.run(artifact=artifact, served=served, rows=rows)}
    if "--inference-only" not in sys.argv:
        for name, run_section in report.live_sections():
            sections[name] = run_section(work=work)
    report.write(sections, machine=machine(), elapsed=time.monotonic() - started, out=ROOT / "docs")
    print(f"wrote docs/benchmarks.md in {time.monotonic() - started:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
