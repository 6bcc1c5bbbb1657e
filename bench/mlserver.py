"""This project beside Seldon MLServer on the same model, measured in one run with one client.

The benchmark builds MLServer its own virtual environment (``.bench/mlserver-<hash>/``, git-ignored)
from the exact versions in ``bench/mlserver-requirements.txt``: MLServer 1.7 with its scikit-learn
runtime and the same scikit-learn, NumPy, SciPy and joblib as this project, so both servers unpickle
the same ``model.joblib``. MLServer runs with ``parallel_workers: 0`` (inference in its main
process, like one daphne process) on a free loopback port; a daphne process of this project runs
on another. Both must return the same probabilities for the same rows before anything is timed.

Measured, each with the same client code against both servers:

- V2 infer, 1 row, one keep-alive connection: median and p99;
- CPU time of the server process (and its children) per 1-row request, from ``/proc/<pid>/stat``;
- V2 infer, 1 row, 8 keep-alive connections at once: requests a second;
- V2 infer, 1000 rows, one connection: median;
- this project's ``POST /api/v1/predict`` for one row against its own V2 infer for the same rows,
  the two taking turns on one connection (``rest_beside_v2``).

This project's daphne runs with production settings (``DEBUG`` off), as MLServer does.

The servers take turns in four rounds (and turns at going first), so that a busy moment on a
shared machine costs both rather than one.

MLServer's venv has pandas (an MLServer dependency), which changes what scikit-learn does on every
``predict_proba``; the same ``predict_proba`` is timed in that venv too and reported beside the
project's own, so the effect is shown rather than folded into one figure.

If MLServer cannot be installed or started, the section is skipped with the reason; the rest of
``make bench`` goes on.

    DJANGO_DEBUG=1 python -m bench.mlserver   # this section alone (trains a model first)
"""

from __future__ import annotations

import hashlib
import http.client
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import IO, Any

import numpy as np

from tests.servers import ServerEnv, collect_static, daphne_servers, free_port, production_settings

from .inference import PROBA_ROWS
from .stats import NO_THROTTLES, Summary

ROOT = Path(__file__).resolve().parent.parent
REQUIREMENTS = Path(__file__).resolve().parent / "mlserver-requirements.txt"
CACHE = ROOT / ".bench"
MODEL_NAME = "diabetes"
ONE_ROW_REQUESTS = 400  # per server, over all rounds
THROUGHPUT_SECONDS = 4.0  # per server, over all rounds
ROUNDS = 4  # the servers take turns this many times
THROUGHPUT_CONNECTIONS = 8
BATCH_ROWS = 1000
BATCH_REQUESTS = 40
REST_REQUESTS = 200
TURN_BLOCK = 10  # REST and V2 requests in a row, in their turns (rest_beside_v2)


class Skip(Exception):
    """MLServer is not available here; the message says why."""


def _pins() -> list[str]:
    return [
        line.strip()
        for line in REQUIREMENTS.read_text().splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    ]


def _project_pin(name: str) -> str | None:
    for line in (ROOT / "requirements.txt").read_text().splitlines():
        if line.split("==", 1)[0].strip().lower() == name:
            return line.split("#", 1)[0].strip()
    return None


def build_venv(log: IO[str]) -> Path:
    """MLServer's venv, built once per set of pins (the folder name carries their hash)."""
    pins = _pins()
    for shared in ("scikit-learn", "numpy", "scipy", "joblib"):
        project, ours = _project_pin(shared), next((p for p in pins if p.lower().startswith(shared + "==")), None)
        if project and ours and project.lower() != ours.lower():
            raise Skip(f"bench/mlserver-requirements.txt pins {ours} but the project pins {project}; align them")
    digest = hashlib.sha256("\n".join(pins).encode()).hexdigest()[:12]
    venv = CACHE / f"mlserver-{digest}"
    python = venv / "bin" / "python"
    if (venv / ".complete").exists():
        return venv
    shutil.rmtree(venv, ignore_errors=True)
    CACHE.mkdir(exist_ok=True)
    print(f"building MLServer's venv in {venv.relative_to(ROOT)} (once; a few minutes)", flush=True)
    try:
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300, stdout=log, stderr=log)
        subprocess.run(
            [str(python), "-m", "pip", "install", "--disable-pip-version-check", "-q", "-r", str(REQUIREMENTS)],
            check=True,
            timeout=900,
            stdout=log,
            stderr=log,
        )
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired, OSError) as exc:
        shutil.rmtree(venv, ignore_errors=True)
        raise Skip(f"MLServer could not be installed ({exc}); see {log.name}") from None
    (venv / ".complete").write_text("\n".join(pins) + "\n")
    return venv


def export_model(env: ServerEnv, version: str, folder: Path) -> tuple[Path, str]:
    """The active model's ``model.joblib`` and how it was got: through ``manage.py models export``
    where the project has it, else copied from the model folder."""
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / "model.joblib"
    exported = folder / "export"
    result = env.manage("models", "export", version, "--dir", str(exported), check=False)
    if result.returncode == 0:
        found = next(exported.rglob("*.joblib"), None)
        if found is not None:
            shutil.copyfile(found, target)
            return target, f"`manage.py models export {version} --dir D`"
    source = env.base / "models" / version / "model.joblib"
    if not source.exists():
        raise Skip(f"cannot export model {version}: {result.stderr.strip()[-300:] or 'no artifact on disk'}")
    shutil.copyfile(source, target)
    return target, "copied from MODEL_DIR"


def _wait_ready(port: int, proc: subprocess.Popen, path: str, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise Skip(f"MLServer exited with {proc.returncode} while starting")
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            conn.request("GET", path)
            if conn.getresponse().status == 200:
                conn.close()
                return
            conn.close()
        except OSError:
            pass
        time.sleep(0.2)
    raise Skip(f"MLServer did not become ready within {timeout:.0f} s")


class MLServer:
    """``mlserver start`` on a folder holding settings.json and the model; loopback ports only."""

    def __init__(self, venv: Path, folder: Path, version: str):
        self.venv, self.folder, self.version = venv, folder, version
        self.port = free_port()
        self.proc: subprocess.Popen | None = None

    def __enter__(self) -> MLServer:
        settings = {
            "debug": False,
            "host": "127.0.0.1",
            "http_port": self.port,
            "grpc_port": free_port(),
            "metrics_port": free_port(),
            "parallel_workers": 0,
        }
        (self.folder / "settings.json").write_text(json.dumps(settings))
        model_settings = {
            "name": MODEL_NAME,
            "implementation": "mlserver_sklearn.SKLearnModel",
            "parameters": {"uri": "./model.joblib", "version": self.version},
        }
        (self.folder / "model-settings.json").write_text(json.dumps(model_settings))
        env = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "VIRTUAL_ENV"))}
        env["PATH"] = f"{self.venv / 'bin'}{os.pathsep}{env.get('PATH', '')}"
        self.log = (self.folder / "mlserver.log").open("ab")
        self.proc = subprocess.Popen(
            [str(self.venv / "bin" / "mlserver"), "start", str(self.folder)],
            cwd=self.folder,
            env=env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )
        try:
            _wait_ready(self.port, self.proc, f"/v2/models/{MODEL_NAME}/ready")
        except Skip:
            self.__exit__(None, None, None)
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self.log.close()


# -- one client for both servers ------------------------------------------------------------------


def _v2_body(rows: np.ndarray, output: str) -> bytes:
    return json.dumps(
        {
            "inputs": [
                {"name": "features", "datatype": "FP64", "shape": list(rows.shape), "data": rows.ravel().tolist()}
            ],
            "outputs": [{"name": output}],
        }
    ).encode()


class Target:
    """One server's V2 infer endpoint and how to read the probability of the positive class."""

    def __init__(self, name: str, port: int, pid: int, output: str):
        self.name, self.port, self.pid, self.output = name, port, pid, output
        self.path = f"/v2/models/{MODEL_NAME}/infer"

    def connect(self) -> http.client.HTTPConnection:
        return http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)

    def body(self, rows: np.ndarray) -> bytes:
        return _v2_body(rows, self.output)

    def post(self, conn: http.client.HTTPConnection, body: bytes, path: str | None = None) -> bytes:
        conn.request("POST", path or self.path, body=body, headers={"Content-Type": "application/json"})
        response = conn.getresponse()
        data = response.read()
        if response.status != 200:
            raise RuntimeError(f"{self.name} answered {response.status}: {data[:300]!r}")
        return data

    def positive(self, data: bytes) -> np.ndarray:
        tensor = json.loads(data)["outputs"][0]
        values = np.asarray(tensor["data"], dtype=float)
        if self.output == "predict_proba":  # MLServer: [N, 2], column 1 is the positive class
            return values.reshape(tensor["shape"])[:, 1]
        return values


def _cpu_seconds(pid: int) -> float:
    """User + system CPU of ``pid`` and its living descendants, in seconds."""
    tick = os.sysconf("SC_CLK_TCK")
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            children.setdefault(int(fields[1]), []).append(int(entry.name))
    total, todo = 0.0, [pid]
    while todo:
        current = todo.pop()
        try:
            fields = Path(f"/proc/{current}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += (int(fields[11]) + int(fields[12])) / tick
        todo.extend(children.get(current, []))
    return total


def one_row(target: Target, rows: np.ndarray, n: int) -> tuple[list[float], float]:
    """Latencies (µs) of ``n`` one-row requests on one connection, and the server's CPU seconds."""
    conn = target.connect()
    bodies = [target.body(rows[i % len(rows)].reshape(1, -1)) for i in range(n)]
    for body in bodies[:20]:  # warm-up: a fresh connection, code paths hot
        target.post(conn, body)
    latencies = []
    cpu = _cpu_seconds(target.pid)
    for body in bodies:
        t = time.perf_counter_ns()
        target.post(conn, body)
        latencies.append((time.perf_counter_ns() - t) / 1000)
    cpu = _cpu_seconds(target.pid) - cpu
    conn.close()
    return latencies, cpu


def throughput(
    target: Target, rows: np.ndarray, seconds: float, connections: int = THROUGHPUT_CONNECTIONS
) -> tuple[int, float]:
    """One-row requests answered and seconds taken, with ``connections`` keep-alive connections
    sending back to back for ``seconds``."""
    bodies = [target.body(rows[i].reshape(1, -1)) for i in range(min(len(rows), 64))]
    counts = [0] * connections
    errors: list[BaseException] = []
    start = threading.Barrier(connections + 1)
    stop = threading.Event()

    def client(k: int) -> None:
        conn = target.connect()
        try:
            target.post(conn, bodies[k % len(bodies)])
            start.wait()
            i = k
            while not stop.is_set():
                target.post(conn, bodies[i % len(bodies)])
                counts[k] += 1
                i += connections
        except BaseException as exc:  # reported below; a failed client must not hang the run
            errors.append(exc)
            stop.set()
        finally:
            conn.close()

    threads = [threading.Thread(target=client, args=(k,), daemon=True) for k in range(connections)]
    for thread in threads:
        thread.start()
    start.wait(timeout=120)
    began = time.perf_counter()
    time.sleep(seconds)
    stop.set()
    for thread in threads:
        thread.join(60)
    elapsed = time.perf_counter() - began
    if errors:
        raise RuntimeError(f"{target.name}: {errors[0]!r}")
    return sum(counts), elapsed


def batch(target: Target, rows: np.ndarray, n: int) -> list[float]:
    conn = target.connect()
    body = target.body(rows)
    for _ in range(3):
        target.post(conn, body)
    latencies = []
    for _ in range(n):
        t = time.perf_counter_ns()
        target.post(conn, body)
        latencies.append((time.perf_counter_ns() - t) / 1000)
    conn.close()
    return latencies


def rest_beside_v2(target: Target, rows: np.ndarray, keys: list[str], n: int) -> tuple[list[float], list[float]]:
    """This project's REST ``POST /api/v1/predict`` and V2 infer for the same rows, about ``n`` of
    each, on one keep-alive connection: latencies (µs) of each.

    They take turns in blocks of ``TURN_BLOCK`` requests, and the first request of each block,
    which follows the other kind, is not timed. So both are sampled over the same stretch of time
    (a busy moment of the machine costs both alike, where two runs one after the other gave ratios
    that swung with the machine's load), and each timed request follows one of its own kind, as in
    a run of its own (a V2 request right after a REST one was slower than one after another V2)."""
    conn = target.connect()
    timed: dict[str, list[float]] = {"rest": [], "v2": []}
    warm_up = 2
    for b in range(warm_up + 2 * -(-n // (TURN_BLOCK - 1))):
        kind = "rest" if b % 2 == 0 else "v2"
        for i in range(TURN_BLOCK):
            row = rows[(b * TURN_BLOCK + i) % len(rows)]
            if kind == "rest":
                path = "/api/v1/predict"
                body = json.dumps({"features": dict(zip(keys, row.tolist(), strict=True))}).encode()
            else:
                path, body = target.path, target.body(row.reshape(1, -1))
            t = time.perf_counter_ns()
            target.post(conn, body, path)
            if b >= warm_up and i > 0:
                timed[kind].append((time.perf_counter_ns() - t) / 1000)
    conn.close()
    return timed["rest"], timed["v2"]


_PROBA_SCRIPT = """
import json, sys, time
import joblib, numpy as np
rows = np.array(json.loads(sys.stdin.read()))
pipeline = joblib.load(sys.argv[1])
try:
    import pandas
    pandas_version = pandas.__version__
except ImportError:
    pandas_version = None
out = []
for _ in range(7):
    for row in rows:
        x = row.reshape(1, -1)
        t = time.perf_counter_ns()
        pipeline.predict_proba(x)
        out.append((time.perf_counter_ns() - t) / 1000)
print(json.dumps({"timings": out, "pandas": pandas_version}))
"""


def proba_in_venv(python: Path, artifact: Path, rows: np.ndarray) -> dict:
    """``predict_proba`` on one-row arrays, timed by ``python`` (another venv's interpreter)."""
    result = subprocess.run(
        [str(python), "-c", _PROBA_SCRIPT, str(artifact)],
        input=json.dumps(rows.tolist()),
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    )
    return json.loads(result.stdout)


def _complete_rows(X: np.ndarray) -> np.ndarray:
    """Rows with every value present (V2 needs them all), in the data's order."""
    return X[~np.isnan(X).any(axis=1)]


def run(*, work: Path, version: str, rows: np.ndarray, keys: list[str]) -> dict:
    """The comparison, or ``{"skipped": reason}``."""
    log_path = work / "mlserver-install.log"
    try:
        with log_path.open("a") as log:
            venv = build_venv(log)
        # Production settings, as MLServer runs (it has no debug mode): with DEBUG on, Django logs
        # every SQL statement, on SQLite with a second query that quotes its parameters, a cost of
        # REST's that production never pays.
        static = work / "static"
        if not static.exists():
            collect_static(static)
        env = ServerEnv(work, extra={**NO_THROTTLES, **production_settings(static)})
        folder = work / "mlserver-model"
        artifact, exported_by = export_model(env, version, folder)
        complete = _complete_rows(rows)
        with MLServer(venv, folder, version) as mlserver, daphne_servers(env, 1) as (daphne,):
            ours = Target("this project", daphne.port, daphne.process.pid, "risk")
            assert mlserver.proc is not None  # started by __enter__
            theirs = Target("MLServer", mlserver.port, mlserver.proc.pid, "predict_proba")
            # Same probabilities for the same rows, first: one request of every complete row.
            conns = [ours.connect(), theirs.connect()]
            sample = complete[:BATCH_ROWS]
            mine, other = (t.positive(t.post(c, t.body(sample))) for t, c in zip((ours, theirs), conns, strict=True))
            for conn in conns:
                conn.close()
            difference = float(np.max(np.abs(mine - other)))
            if difference > 1e-9:
                raise RuntimeError(f"the servers disagree by {difference:.3g} on the same rows")
            thousand = np.resize(complete, (BATCH_ROWS, complete.shape[1]))
            result: dict = {"agreement": difference, "agreement_rows": len(sample), "exported_by": exported_by}
            # The machine is shared: the two servers take turns, round by round, alternating which
            # goes first, so that a busy moment costs both rather than one.
            samples: dict[str, dict[str, Any]] = {
                t.name: {"one_row": [], "cpu": 0.0, "answered": 0, "seconds": 0.0, "batch": []} for t in (ours, theirs)
            }
            rest: list[float] = []
            v2_beside_rest: list[float] = []
            for r in range(ROUNDS):
                for target in (theirs, ours) if r % 2 == 0 else (ours, theirs):
                    tally = samples[target.name]
                    latencies, cpu = one_row(target, complete, ONE_ROW_REQUESTS // ROUNDS)
                    tally["one_row"] += latencies
                    tally["cpu"] += cpu
                    answered, seconds = throughput(target, complete, THROUGHPUT_SECONDS / ROUNDS)
                    tally["answered"] += answered
                    tally["seconds"] += seconds
                    tally["batch"] += batch(target, thousand, BATCH_REQUESTS // ROUNDS)
                    if target is ours:
                        pairs = rest_beside_v2(ours, complete, keys, REST_REQUESTS // ROUNDS)
                        rest += pairs[0]
                        v2_beside_rest += pairs[1]
            for target in (ours, theirs):
                tally = samples[target.name]
                result[target.name] = {
                    "one_row": Summary.of(f"{target.name}: V2 infer, 1 row", tally["one_row"]),
                    "cpu_ms": tally["cpu"] * 1000 / len(tally["one_row"]),
                    "throughput": tally["answered"] / tally["seconds"],
                    "batch": Summary.of(f"{target.name}: V2 infer, {BATCH_ROWS} rows", tally["batch"]),
                }
            result["rest"] = Summary.of("this project: POST /api/v1/predict, 1 row", rest)
            result["v2_beside_rest"] = Summary.of("this project: V2 infer, 1 row, beside REST", v2_beside_rest)
        probe = rows[:PROBA_ROWS]  # the rows bench.inference times predict_proba on
        result["proba_mlserver_venv"] = proba_in_venv(venv / "bin" / "python", artifact, probe)
        result["mlserver_versions"] = _versions(venv)
        return result
    except Skip as exc:
        print(f"MLServer comparison skipped: {exc}", flush=True)
        return {"skipped": str(exc)}
    except Exception as exc:  # a broken comparison must not cost the rest of the benchmark
        print(f"MLServer comparison failed: {exc!r}", flush=True)
        return {"skipped": f"the comparison failed: {exc!r}"}


def _versions(venv: Path) -> dict:
    script = (
        "import importlib.metadata as m, json;"
        "print(json.dumps({p: m.version(p) for p in "
        "('mlserver', 'mlserver-sklearn', 'scikit-learn', 'numpy', 'pandas')}))"
    )
    out = subprocess.run([str(venv / "bin" / "python"), "-c", script], capture_output=True, text=True, timeout=60)
    return json.loads(out.stdout) if out.returncode == 0 else {}


if __name__ == "__main__":
    import tempfile

    from . import __main__ as bench_main

    work = Path(tempfile.mkdtemp(prefix="bench-mlserver-"))
    served, X = bench_main.prepare(work)
    from ml_engine.schema import FEATURE_KEYS

    outcome = run(work=work, version=served.version, rows=X, keys=list(FEATURE_KEYS))
    for key, value in outcome.items():
        print(key, value if not isinstance(value, dict) or "timings" not in value else len(value["timings"]))
