"""What a simulated meter measures: registers, instantaneous values, clock and memory.

Protocol-neutral (a Modbus simulator can reuse it). Energy integrates a load
shape exactly: power in whole watts times milliseconds, so that registers, load
profile records and daily freezes always agree to the last digit, and the total
register is exactly the sum of the tariff registers.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from decimal import ROUND_HALF_EVEN, Decimal
from enum import StrEnum

from amigate.meter_models import MeterModel
from amigate.simulators.load_shape import LoadShape, TouSchedule, phase_split, voltage_wobble

#: Watt-milliseconds in one register digit (0.01 kWh).
_PER_DIGIT = 36_000_000
_MINUTE_MS = 60_000
_HUNDREDTH = Decimal("0.01")
#: Meter clocks run on local time without DST; State Grid meters use Beijing time.
CHINA = timezone(timedelta(hours=8), "CST")


class RegisterMode(StrEnum):
    """How the active-import registers behave (faults make them stop or run backwards)."""

    NORMAL = "normal"
    STOPPED = "stopped"
    BACKWARDS = "backwards"


@dataclass(frozen=True, slots=True)
class Instant:
    """Instantaneous values at one moment, rounded as the meter reports them."""

    voltages: tuple[Decimal, ...]  #: V per phase, 0.1 V
    currents: tuple[Decimal, ...]  #: A per phase, 0.001 A, negative when exporting
    powers: tuple[Decimal, ...]  #: kW: total, then per phase, 0.0001 kW
    power_factor: Decimal  #: 0.001
    frequency: Decimal  #: Hz, 0.01


@dataclass(frozen=True, slots=True)
class LoadRecord:
    """One load-profile record, taken at the end of an interval."""

    stamp: datetime  #: meter local time: the meter clock's, not the true time
    import_kwh: Decimal
    export_kwh: Decimal
    instant: Instant


@dataclass(frozen=True, slots=True)
class FreezeRecord:
    """One daily freeze, taken at local midnight of the meter clock."""

    stamp: datetime  #: meter local time: the meter clock's, not the true time
    import_kwh: tuple[Decimal, ...]  #: total, then tariffs 1..n
    export_kwh: Decimal


def _ms(when: datetime) -> int:
    return int(when.timestamp() * 1000)


def _round(value: float, places: str) -> Decimal:
    return Decimal(repr(value)).quantize(Decimal(places), rounding=ROUND_HALF_EVEN)


class MeterPhysics:
    """The measuring part of one simulated meter, advanced lazily to the current time."""

    def __init__(
        self,
        *,
        model: MeterModel,
        shape: LoadShape,
        start: datetime,
        tou: TouSchedule | None = None,
        initial_kwh: Decimal = Decimal(0),
        clock_offset_s: float = 0.0,
        clock_drift_ppm: float = 0.0,
        seed: int = 0,
        tz: timezone = CHINA,
    ) -> None:
        """Create a meter whose history starts at ``start``.

        Args:
            model: the meter model (phases, tariffs, rated values, memory depth).
            shape: the customer's load.
            start: when the meter starts counting (UTC-aware); may lie in the past.
            tou: the time-of-use schedule; default 4-tariff split.
            initial_kwh: the import register at ``start``, spread over the tariffs.
            clock_offset_s: the meter clock's error at ``start``.
            clock_drift_ppm: how fast the meter clock runs ahead (+) or behind (-).
            seed: varies voltages between meters.
            tz: the meter's local time zone.
        """
        self.model = model
        self.shape = shape
        self.tou = tou or TouSchedule()
        self.tariffs = max(1, model.tariffs)
        self.tz = tz
        self.seed = seed
        self.start_ms = _ms(start)
        self.clock_drift_ppm = clock_drift_ppm
        self.clock_offset_ms = round(clock_offset_s * 1000)
        self.mode = RegisterMode.NORMAL
        self._t = self.start_ms
        digits = int(initial_kwh * 100)
        weights = (1, 3, 4, 2) if self.tariffs == 4 else (1,) * self.tariffs
        shares = [digits * w // sum(weights) for w in weights]
        shares[-1] += digits - sum(shares)
        self._import = [share * _PER_DIGIT for share in shares]
        self._export = 0
        memory = model.memory
        per_day = 1440 // memory.load_profile_interval_min
        self.load_profile: deque[LoadRecord] = deque(
            maxlen=max(1, memory.load_profile_days * per_day)
        )
        self.freezes: deque[FreezeRecord] = deque(maxlen=max(1, memory.daily_freezes))
        self._interval_ms = memory.load_profile_interval_min * _MINUTE_MS
        #: The next minute the meter clock will show (epoch ms), and when (true epoch ms).
        self._mark: tuple[int, int] | None = None

    # --- time ---------------------------------------------------------------------------

    def local(self, when_ms: int) -> datetime:
        """True local time (naive) at ``when_ms``."""
        return datetime.fromtimestamp(when_ms / 1000, self.tz).replace(tzinfo=None)

    def meter_time(self, now: datetime) -> datetime:
        """The meter clock's reading (naive local time, whole seconds) at ``now``."""
        return self.local(self._meter_ms(_ms(now))).replace(microsecond=0)

    def _meter_ms(self, when_ms: int) -> int:
        """The meter clock at true ``when_ms``, as epoch milliseconds."""
        drift = (when_ms - self.start_ms) * self.clock_drift_ppm / 1e6
        return when_ms + self.clock_offset_ms + round(drift)

    def _true_ms(self, mark: int) -> int:
        """The first true millisecond at which the meter clock shows ``mark`` or later."""
        t = mark - self.clock_offset_ms
        t -= round((t - self.start_ms) * self.clock_drift_ppm / 1e6)
        while self._meter_ms(t) < mark:
            t += 1
        while self._meter_ms(t - 1) >= mark:
            t -= 1
        return t

    def set_meter_time(self, now: datetime, when: datetime) -> None:
        """Set the clock so that it reads ``when`` (naive local) at ``now`` (time sync)."""
        self.clock_offset_ms += round((when - self.meter_time(now)).total_seconds() * 1000)
        self._mark = None

    def jump_clock(self, seconds: float) -> None:
        """Make the clock jump (a fault, or a battery failure after an outage)."""
        self.clock_offset_ms += round(seconds * 1000)
        self._mark = None

    # --- energy -------------------------------------------------------------------------

    def advance(self, now: datetime) -> None:
        """Integrate the load up to ``now``, writing load records and daily freezes.

        Energy is integrated per minute of true time. Records and freezes are taken
        the way a meter takes them, by its own clock: a load-profile record when the
        meter clock reaches an interval boundary, a daily freeze when it reaches
        local midnight, each stamped with the meter clock's time. A meter whose
        clock is 2 min ahead thus stamps ``10:15`` the register value of 10:13.
        """
        end = _ms(now)
        t = self._t
        while t < end:
            if self._mark is None:
                mark = (self._meter_ms(t) // _MINUTE_MS + 1) * _MINUTE_MS
                self._mark = (mark, self._true_ms(mark))
            mark, marked = self._mark
            minute = (t // _MINUTE_MS + 1) * _MINUTE_MS
            segment_end = min(end, minute, marked)
            local = self.local(t)
            watts = self.shape.power_w(local)
            energy = watts * (segment_end - t)
            if energy >= 0:
                tariff = self.tou.tariff_at(local)
                index = min(tariff, self.tariffs) - 1
                if self.mode is RegisterMode.NORMAL:
                    self._import[index] += energy
                elif self.mode is RegisterMode.BACKWARDS:
                    self._import[index] = max(0, self._import[index] - energy)
            else:
                self._export -= energy
            t = segment_end
            if t == marked:
                self._take_records(mark, t)
                self._mark = None
        self._t = max(self._t, end)

    def _take_records(self, mark: int, when_ms: int) -> None:
        """The meter clock shows ``mark`` (epoch ms) at true ``when_ms``: record what is due."""
        stamp = self.local(mark)
        if mark % self._interval_ms == 0:
            self.load_profile.append(
                LoadRecord(
                    stamp=stamp,
                    import_kwh=self.import_kwh()[0],
                    export_kwh=self.export_kwh(),
                    instant=self.instant_at(when_ms),
                )
            )
        if stamp.hour == 0 and stamp.minute == 0:
            self.freezes.append(
                FreezeRecord(
                    stamp=stamp, import_kwh=self.import_kwh(), export_kwh=self.export_kwh()
                )
            )

    def import_kwh(self) -> tuple[Decimal, ...]:
        """Active import registers: total, then tariffs 1..n (total = their exact sum)."""
        tariffs = [Decimal(acc // _PER_DIGIT) * _HUNDREDTH for acc in self._import]
        return (sum(tariffs, Decimal("0.00")), *tariffs)

    def export_kwh(self) -> Decimal:
        """Active export register."""
        return Decimal(self._export // _PER_DIGIT) * _HUNDREDTH

    # --- instantaneous values -----------------------------------------------------------

    def instant(self, now: datetime) -> Instant:
        """Instantaneous values at ``now``, consistent with the energy being integrated."""
        return self.instant_at(_ms(now))

    def instant_at(self, when_ms: int) -> Instant:
        """Instantaneous values at ``when_ms`` (epoch milliseconds)."""
        local = self.local(when_ms)
        watts = self.shape.power_w(local)
        pf = self.shape.pf_at(local)
        rated = float(self.model.rated.voltage_v)
        minute = when_ms // _MINUTE_MS
        voltages, currents, powers = [], [], []
        for phase, share in enumerate(phase_split(self.model.phases)):
            volts = _round(rated * (1 + voltage_wobble(self.seed, minute, phase)), "0.1")
            kw = _round(watts * share / 1000, "0.0001")
            amps = _round(float(kw) * 1000 / (float(volts) * float(pf)), "0.001")
            voltages.append(volts)
            currents.append(amps)
            powers.append(kw)
        total = _round(watts / 1000, "0.0001")
        frequency = _round(50 + 0.02 * voltage_wobble(self.seed + 7, minute, 0), "0.01")
        return Instant(
            voltages=tuple(voltages),
            currents=tuple(currents),
            powers=(total, *powers),
            power_factor=pf.quantize(Decimal("0.001")),
            frequency=frequency,
        )


def utc_now() -> datetime:
    """The default simulation clock: the real time, UTC-aware."""
    return datetime.now(UTC)
