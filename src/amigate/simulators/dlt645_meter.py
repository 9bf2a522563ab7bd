"""A simulated DL/T 645 meter: answers frames the way its model definition says it would."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal

from amigate.codecs import (
    ADDRESS_BROADCAST,
    Category,
    DiSpec,
    Dlt645Version,
    FieldSpec,
    Frame,
    Value,
    build_abnormal_response,
    build_address_response,
    build_read_response,
    decode_read_request,
    decode_time_sync,
    decode_value,
    encode_frame,
    encode_load_record,
    find_di,
    value_format,
)
from amigate.errors import AmigateError
from amigate.meter_models import DataId, MeterModel
from amigate.simulators.faults import FaultKind, FaultSet
from amigate.simulators.physics import Instant, LoadRecord, MeterPhysics, RegisterMode

#: Error byte for "no requested data" (2007) / "data identifier error" (1997): bit 1.
NO_DATA = 0x02
#: DATA bytes left for records in one reply frame (200 minus DI and follow-up SEQ).
_RECORD_ROOM = 200 - 4 - 1


@dataclass(frozen=True, slots=True)
class Reply:
    """Bytes a meter puts on the line, and how long it waits before doing so."""

    data: bytes
    delay: float = 0.0


class Dlt645Meter:
    """One simulated meter on a virtual bus."""

    def __init__(
        self,
        *,
        address: str,
        model: MeterModel,
        physics: MeterPhysics,
        origin: datetime,
        faults: FaultSet | None = None,
        preamble: int = 2,
        response_delay: float = 0.0,
        sync_limit_s: float = 300.0,
    ) -> None:
        """Create the meter.

        Args:
            address: the 12-digit communication address.
            model: its model definition; only the points listed there are answered.
            physics: what it measures.
            origin: when the simulation started (fault times count from here).
            faults: injected faults.
            preamble: FEH bytes in front of each reply (meters send 0 to 4).
            response_delay: seconds before each reply (the meter's Td).
            sync_limit_s: a broadcast time set moving the clock by more than this is
                ignored, and only one a day (meter local date) is taken, as meters do
                (``0``: any correction, any number of times).

        Raises:
            ValueError: the model is not a DL/T 645 model.
        """
        if model.dlt645_version is None:
            raise ValueError(f"model {model.id} is not a DL/T 645 model")
        self.address = address
        self.model = model
        self.physics = physics
        self.origin = origin
        self.faults = faults or FaultSet()
        self.preamble = preamble
        self.response_delay = response_delay
        self.sync_limit_s = sync_limit_s
        self.synced_on: date | None = None
        self.syncs_refused = 0
        self.version = Dlt645Version(model.protocol)
        self.requests = 0
        self._supported = _supported_dis(model)
        self._channels = {p.channel for p in model.points}
        self._followups: dict[int, list[Frame]] = {}

    # --- state --------------------------------------------------------------------------

    def sync(self, now: datetime) -> None:
        """Bring registers and memory up to ``now``, applying faults that became due."""
        for fault in self.faults.pending_state_faults(self.origin, now):
            when = fault.starts(self.origin)
            self.physics.advance(when)
            if fault.kind is FaultKind.CLOCK_JUMP:
                self.physics.jump_clock(fault.seconds)
            elif fault.kind is FaultKind.REGISTER_STOPPED:
                self.physics.mode = RegisterMode.STOPPED
            elif fault.kind is FaultKind.REGISTER_BACKWARDS:
                self.physics.mode = RegisterMode.BACKWARDS
        self.physics.advance(now)

    def _set_time(self, now: datetime, when: datetime) -> None:
        """Take a time set, unless it moves the clock too far or one was taken today."""
        shown = self.physics.meter_time(now)
        too_far = abs((when - shown).total_seconds()) > self.sync_limit_s
        if self.sync_limit_s and (too_far or self.synced_on == shown.date()):
            self.syncs_refused += 1
            return
        self.physics.set_meter_time(now, when)
        self.synced_on = when.date()

    def supports(self, di: int) -> bool:
        """Tell whether the meter answers reads of ``di``."""
        return di in self._supported or self._block_supported(di)

    # --- frames -------------------------------------------------------------------------

    def handle(self, frame: Frame, now: datetime) -> list[Reply]:
        """Answer one request frame addressed to this meter (or broadcast).

        Args:
            frame: a request frame whose address selects this meter.
            now: the simulated time.

        Returns:
            The replies to put on the line; empty when the meter stays silent.
        """
        self.requests += 1
        self.sync(now)
        if frame.function == 0x08:
            if frame.address == ADDRESS_BROADCAST or frame.address == self.address:
                self._set_time(now, decode_time_sync(frame))
            return []
        if frame.address == ADDRESS_BROADCAST:
            return []
        if frame.function == 0x13 and self.version is Dlt645Version.V2007:
            return self._send(build_address_response(self.address), None, now)
        try:
            request = decode_read_request(frame)
        except AmigateError:
            return []  # not a read: this simulator does not implement writes
        if request.version is not self.version:
            return []  # a 1997 meter ignores 2007 function codes and vice versa
        plan = self.faults.plan(request.di, self.origin, now)
        if plan.silent:
            return []
        if plan.abnormal_code is not None:
            frames = [build_abnormal_response(self.address, plan.abnormal_code, self.version)]
        elif request.follow_up:
            frames = self._followup(request.di, request.seq)
        else:
            frames = self._read(request.di, request.extra, now)
        raw = b"".join(plan.garble(encode_frame(f, preamble=self.preamble)) for f in frames)
        return [Reply(raw, self.response_delay + plan.delay)]

    def _send(self, frame: Frame, di: int | None, now: datetime) -> list[Reply]:
        plan = self.faults.plan(di, self.origin, now)
        if plan.silent:
            return []
        raw = plan.garble(encode_frame(frame, preamble=self.preamble))
        return [Reply(raw, self.response_delay + plan.delay)]

    def _reject(self) -> list[Frame]:
        return [build_abnormal_response(self.address, NO_DATA, self.version)]

    def _followup(self, di: int, seq: int | None) -> list[Frame]:
        pending = self._followups.get(di)
        index = (seq or 1) - 1
        if not pending or not 0 <= index < len(pending):
            return self._reject()
        frame = pending[index]
        if index == len(pending) - 1:
            del self._followups[di]
        return [frame]

    def _read(self, di: int, extra: bytes, now: datetime) -> list[Frame]:
        spec = find_di(di, self.version)
        if spec is None or not self.supports(di):
            return self._reject()
        if spec.category is Category.LOAD_PROFILE:
            return self._load_profile(di, extra)
        values = self._values(spec, now)
        if values is None:
            return self._reject()
        return [build_read_response(self.address, di, values, self.version)]

    # --- values -------------------------------------------------------------------------

    def _values(self, spec: DiSpec, now: datetime) -> list[Value | int] | None:
        physics = self.physics
        if spec.category is Category.FREEZE:
            return self._freeze(spec)
        if spec.category is Category.PARAMETER:
            name = spec.fields[0].name
            if name in ("communication address", "meter number"):
                return [self.address]
            shown = physics.meter_time(now)
            if name in ("date", "time", "date and time"):
                return [shown]
            return None
        channels = _channel_values(physics.import_kwh(), physics.export_kwh(), physics.instant(now))
        fields = spec.fields + _tariff_fields(spec, self.physics.tariffs)
        out: list[Value | int] = []
        for f in fields:
            value = channels.get(f.channel or "")
            out.append(_fit(value, f))
        return out

    def _freeze(self, spec: DiSpec) -> list[Value | int] | None:
        nth = spec.di & 0xFF
        kind = (spec.di >> 16) & 0xFF
        content = (spec.di >> 8) & 0xFF
        freezes = self.physics.freezes
        if kind != 0x06 or not 1 <= nth <= len(freezes):
            return None
        record = freezes[-nth]
        if content == 0x00:
            return [record.stamp]
        if content == 0x01:
            return list(record.import_kwh)
        if content == 0x02:
            return [record.export_kwh]
        return None

    def _load_profile(self, di: int, extra: bytes) -> list[Frame]:
        records = list(self.physics.load_profile)
        count = int(extra[:1].hex() or "1") if extra[:1].hex().isdigit() else 1
        mode = di & 0xFF
        if mode == 0x01 and len(extra) >= 6:
            since = decode_value(extra[1:6], value_format("YYMMDDhhmm"))
            records = [r for r in records if isinstance(since, datetime) and r.stamp >= since]
        elif mode == 0x02:
            records = records[-1:]
        records = records[: max(1, count)]
        if not records:
            return self._reject()
        chunks: list[bytes] = []
        current = b""
        for record in records:
            encoded = _encode_record(record, self.model.phases)
            if current and len(current) + len(encoded) > _RECORD_ROOM:
                chunks.append(current)
                current = b""
            current += encoded
        chunks.append(current)
        frames = [
            build_read_response(
                self.address,
                di,
                chunk,
                self.version,
                follow_up=i < len(chunks) - 1,
                seq=i if i else None,
            )
            for i, chunk in enumerate(chunks)
        ]
        if len(frames) > 1:
            self._followups[di] = frames[1:]
        return frames[:1]

    def _block_supported(self, di: int) -> bool:
        spec = find_di(di, self.version)
        if spec is None or spec.category not in (Category.ENERGY, Category.INSTANTANEOUS):
            return False
        fields = spec.fields + _tariff_fields(spec, self.physics.tariffs)
        return all(f.channel in self._channels for f in fields)


def _supported_dis(model: MeterModel) -> set[int]:
    out: set[int] = set()
    for point in model.points:
        source = point.source
        if isinstance(source, DataId):
            if source.indexed:
                out.update(source.at(i) for i in range(1, source.depth + 1))
            else:
                out.add(source.di)
    return out


def _tariff_fields(spec: DiSpec, tariffs: int) -> tuple[FieldSpec, ...]:
    if not spec.tariff_fields:
        return ()
    length = spec.fixed_length + tariffs * sum(f.length for f in spec.tariff_fields)
    return spec.layout(length)[len(spec.fields) :]


def _fit(value: Value | int, f: FieldSpec) -> Value | int:
    """Round a number to the field's resolution (1997 volts are whole numbers)."""
    if isinstance(value, Decimal):
        return value.quantize(f.scale)
    return value


def _channel_values(
    imports: tuple[Decimal, ...], export: Decimal, instant: Instant
) -> dict[str, Value | int]:
    values: dict[str, Value | int] = {"1.8.0": imports[0], "2.8.0": export}
    for n, kwh in enumerate(imports[1:], start=1):
        values[f"1.8.{n}"] = kwh
    for n in range(1, 64):
        values.setdefault(f"2.8.{n}", Decimal(0))
    for phase, (volt_ch, amp_ch, kw_ch, pf_ch) in enumerate(
        (
            ("32.7.0", "31.7.0", "21.7.0", "33.7.0"),
            ("52.7.0", "51.7.0", "41.7.0", "53.7.0"),
            ("72.7.0", "71.7.0", "61.7.0", "73.7.0"),
        )
    ):
        single = len(instant.voltages) == 1
        present = phase < len(instant.voltages)
        values[volt_ch] = instant.voltages[phase] if present else None
        values[amp_ch] = instant.currents[phase] if present else None
        values[kw_ch] = instant.powers[phase + 1] if present else (None if single else Decimal(0))
        values[pf_ch] = instant.power_factor if present else None
    values["1.7.0"] = instant.powers[0]
    values["13.7.0"] = instant.power_factor
    values["14.7.0"] = instant.frequency
    return values


def _encode_record(record: LoadRecord, phases: int) -> bytes:
    instant = record.instant
    volts: list[Value | int] = [*instant.voltages, *([None] * (3 - phases))]
    amps: list[Value | int] = [*instant.currents, *([None] * (3 - phases))]
    return encode_load_record(
        record.stamp,
        {
            1: [*volts, *amps, instant.frequency],
            4: [record.import_kwh, record.export_kwh, Decimal(0), Decimal(0)],
        },
    )


#: A function returning the simulated time (UTC-aware).
Clock = Callable[[], datetime]
