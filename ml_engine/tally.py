"""Per-process prediction counts for monitoring, written to ``PredictionCount`` in the background.

Every interface (form, REST, V2, the live socket) adds its predictions here: a dictionary
increment under a lock, no I/O, so it is safe on the event loop and costs well under a
microsecond per call. A daemon thread started by the first prediction writes what has accumulated
every ``PREDICTION_COUNT_FLUSH_SECONDS`` (a few statements per flush, one per key, never one per
prediction), and once more when the process exits. README: "Monitoring".

Bounded by construction: a key is (day, interface, model version, band, risk tenth) and a process
keeps at most ``MAX_PENDING_KEYS`` of them between flushes; predictions beyond that (a database
that stays unreachable for days while versions change) are counted in ``dropped`` and logged, not
kept. No measurement and no identifier of a person is ever part of a key.
"""

from __future__ import annotations

import atexit
import logging
import threading
import time
from collections.abc import Mapping, Sequence
from datetime import date

import numpy
from django.conf import settings
from django.db import DatabaseError, IntegrityError, close_old_connections, transaction
from django.db.models import F

logger = logging.getLogger(__name__)

MAX_PENDING_KEYS = 4096
_EPOCH_ORDINAL = date(1970, 1, 1).toordinal()

# (UTC day since 1970, interface, model version, band, risk tenth)
Key = tuple[int, str, str, str, int]


def risk_tenth(risk: float) -> int:
    """floor(10 x risk) in 0..9 (a risk of exactly 1.0 counts in the top tenth)."""
    return min(max(int(risk * 10.0), 0), 9)


def _today() -> int:
    return int(time.time() // 86400)


class Tally:
    """Prediction counts of this process since its last flush."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pending: dict[Key, int] = {}
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self.dropped = 0
        self._failing = False

    def add(self, *, interface: str, model_version: str, band: str, risk: float) -> None:
        """Count one prediction."""
        key = (_today(), interface, model_version, band, risk_tenth(risk))
        with self._lock:
            if key in self._pending or len(self._pending) < MAX_PENDING_KEYS:
                self._pending[key] = self._pending.get(key, 0) + 1
            else:
                self.dropped += 1
        self._ensure_started()

    def add_risks(
        self, *, interface: str, model_version: str, risks: numpy.ndarray, bands: Mapping[str, Sequence[float]]
    ) -> None:
        """Count a batch of risks (a few array operations, then one locked merge of at most
        bands x 10 keys), with each risk's band as ``services.band_for`` assigns it."""
        if not len(risks):
            return
        names = sorted(bands, key=lambda name: bands[name][0])
        lows = numpy.array([bands[name][0] for name in names], dtype=float)
        band_index = numpy.clip(numpy.searchsorted(lows, risks, side="right") - 1, 0, len(names) - 1)
        tenths = numpy.clip((numpy.asarray(risks, dtype=float) * 10.0).astype(numpy.int64), 0, 9)
        codes = numpy.bincount(band_index * 10 + tenths, minlength=10 * len(names))
        day = _today()
        with self._lock:
            for code in numpy.flatnonzero(codes).tolist():
                key = (day, interface, model_version, names[code // 10], code % 10)
                if key in self._pending or len(self._pending) < MAX_PENDING_KEYS:
                    self._pending[key] = self._pending.get(key, 0) + int(codes[code])
                else:
                    self.dropped += int(codes[code])
        self._ensure_started()

    def pending(self) -> dict[Key, int]:
        """A copy of what has not been written yet."""
        with self._lock:
            return dict(self._pending)

    def flush(self) -> int:
        """Write the pending counts (adding to rows that exist); returns how many keys were
        written. On a database error the counts are kept for the next flush (within the bound)."""
        with self._lock:
            batch, self._pending = self._pending, {}
        if not batch:
            return 0
        from .models import PredictionCount

        try:
            with transaction.atomic():
                for (day, interface, version, band, tenth), n in sorted(batch.items()):
                    fields = {
                        "day": date.fromordinal(_EPOCH_ORDINAL + day),
                        "interface": interface,
                        "model_version": version,
                        "band": band,
                        "risk_tenth": tenth,
                    }
                    rows = PredictionCount.objects.filter(**fields)
                    if rows.update(count=F("count") + n):
                        continue
                    try:
                        with transaction.atomic():  # another process may create it first
                            PredictionCount.objects.create(**fields, count=n)
                    except IntegrityError:
                        rows.update(count=F("count") + n)
        except DatabaseError:
            self._merge_back(batch)
            if not self._failing:
                logger.warning("Writing prediction counts failed; keeping them for the next try.", exc_info=True)
            self._failing = True
            return 0
        if self._failing:
            logger.info("Writing prediction counts works again.")
        self._failing = False
        return len(batch)

    def _merge_back(self, batch: Mapping[Key, int]) -> None:
        with self._lock:
            for key, n in batch.items():
                if key in self._pending or len(self._pending) < MAX_PENDING_KEYS:
                    self._pending[key] = self._pending.get(key, 0) + n
                else:
                    self.dropped += n
            if self.dropped:
                logger.warning("%d predictions were not counted: too many pending counts.", self.dropped)

    def _ensure_started(self) -> None:
        if self._thread is not None:
            return
        interval = float(getattr(settings, "PREDICTION_COUNT_FLUSH_SECONDS", 5.0))
        if interval <= 0:
            return  # tests flush by hand
        with self._lock:
            if self._thread is not None:
                return
            self._thread = threading.Thread(target=self._run, args=(interval,), name="prediction-tally", daemon=True)
            self._thread.start()
        atexit.register(self._final_flush)

    def _run(self, interval: float) -> None:
        while not self._stop.wait(interval):
            try:
                self.flush()
            except Exception:  # never let the writer die: the next interval tries again
                logger.exception("Writing prediction counts failed unexpectedly.")
            finally:
                close_old_connections()

    def _final_flush(self) -> None:
        self._stop.set()
        try:
            self.flush()
        except Exception:  # the database may already be gone at exit
            logger.warning("Could not write the last prediction counts at exit.", exc_info=True)

    def reset(self) -> None:
        """Forget pending counts (tests)."""
        with self._lock:
            self._pending.clear()
            self.dropped = 0


tally = Tally()
