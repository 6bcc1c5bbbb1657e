"""Flood control for live WebSockets: per socket, a token bucket and the verdict it gives each
received frame; per address, a budget of answers shared by all its sockets on this process.

Every frame a client sends takes a token, whatever it holds (bad frames count too). Tokens come
back at ``rate`` a second up to ``burst``, which is far more than anyone typing or pasting needs.
A frame that finds the bucket empty is *over the limit*:

* the first over-limit frame of an episode gets ``WARN`` (the consumer tells the client once);
* later ones get ``DROP`` (the consumer sends nothing for them);
* once the client has sent more than ``burst`` over-limit frames and is still over the limit
  ``close_after`` seconds after the warning, ``CLOSE`` (the consumer closes with 1008).

The episode ends when the client has been quiet long enough for the bucket to hold half its
burst again; a later flood starts a new one with a new warning.

``AddressBudgets`` caps the predictions one address group gets answered per second on one
process (``WEBSOCKET_ANSWERS_PER_ADDRESS``), whatever number of sockets it spreads them over: past
it, its sockets' newest states wait for a token (nothing is lost: the newest is answered), so
a hundred sockets typing from one address cannot take the process's CPU from everyone else
(docs/kiosk.md, "Kiosks under load").
"""

from __future__ import annotations

import enum
import time
from collections import OrderedDict

monotonic = time.monotonic  # module attribute, so tests can drive the clock


class Verdict(enum.Enum):
    OK = "ok"
    WARN = "warn"
    DROP = "drop"
    CLOSE = "close"


class TokenBucket:
    """``rate`` tokens a second, holding at most ``burst``; starts full."""

    __slots__ = ("_stamp", "burst", "rate", "tokens")

    def __init__(self, rate: float, burst: float) -> None:
        if rate <= 0 or burst < 1:
            raise ValueError("rate must be positive and burst at least 1")
        self.rate = float(rate)
        self.burst = float(burst)
        self.tokens = self.burst
        self._stamp = monotonic()

    def _refill(self) -> None:
        now = monotonic()
        if now > self._stamp:
            self.tokens = min(self.burst, self.tokens + (now - self._stamp) * self.rate)
        self._stamp = now

    def take(self) -> bool:
        """Take one token if there is one."""
        self._refill()
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return True
        return False

    def level(self) -> float:
        self._refill()
        return self.tokens

    def wait_for_token(self) -> float:
        """Seconds until a token is there (0 if one is there now)."""
        level = self.level()
        return 0.0 if level >= 1.0 else (1.0 - level) / self.rate


class FloodGuard:
    """One socket's flood policy (see the module docstring)."""

    __slots__ = ("_bucket", "_over", "close_after", "warned_at")

    def __init__(self, *, rate: float = 100.0, burst: float = 200.0, close_after: float = 2.0) -> None:
        self._bucket = TokenBucket(rate, burst)
        self.close_after = close_after
        self.warned_at: float | None = None  # start of the current episode
        self._over = 0  # over-limit frames in the current episode

    @property
    def limited(self) -> bool:
        """True during an episode (from the warning until the client has calmed down)."""
        if self.warned_at is not None and self._bucket.level() >= self._bucket.burst / 2:
            self.warned_at = None
            self._over = 0
        return self.warned_at is not None

    def frame(self) -> Verdict:
        """The verdict for one received frame."""
        warned_at = self.warned_at if self.limited else None
        if self._bucket.take():
            return Verdict.OK
        if warned_at is None:
            self.warned_at = monotonic()
            self._over = 1
            return Verdict.WARN
        self._over += 1
        if self._over > self._bucket.burst and monotonic() - warned_at >= self.close_after:
            return Verdict.CLOSE
        return Verdict.DROP

    def reply_delay(self) -> float:
        """While limited, replies wait for a token: at most ``rate`` replies a second."""
        return self._bucket.wait_for_token() if self.limited else 0.0


class AddressBudgets:
    """One token bucket per address group on this process, at most ``max_addresses`` of them
    (the least recently used go first: a forgotten address starts again with a full bucket)."""

    def __init__(self, max_addresses: int = 10_000) -> None:
        self.max_addresses = max_addresses
        self._buckets: OrderedDict[str, TokenBucket] = OrderedDict()

    def bucket(self, source: str, rate: float) -> TokenBucket:
        """The budget of ``source`` (an address group's keyed hash): ``rate`` answers a second,
        a burst of twice that."""
        bucket = self._buckets.get(source)
        if bucket is None or bucket.rate != rate:
            bucket = self._buckets[source] = TokenBucket(rate, max(1.0, 2 * rate))
            while len(self._buckets) > self.max_addresses:
                self._buckets.popitem(last=False)
        self._buckets.move_to_end(source)
        return bucket


budgets = AddressBudgets()
