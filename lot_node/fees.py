"""Fees the lot computes with the settlement engine (``settlement.tariff``): its own temporary
tariff (临时车收费), read from a TOML file, and the tariff agreed with the platform (for the
reconciliation), received as ``crosspark.v1.Tariff`` messages.

A temporary tariff file has the fields of DESIGN section 7::

    kind = "per_time"          # or "per_visit"
    unit_minutes = 60
    free_minutes = 15
    cap_per_24h_fen = 5000
    max_per_stay_fen = 0
    visit_fee_fen = 0          # per_visit only
    bands = [{ start = "08:00", unit_fee_fen = 500 }, { start = "20:00", unit_fee_fen = 300 }]
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

from crosspark.v1 import settlement_pb2
from lot_node.gate import PriceTemporary
from settlement.tariff import Band, Tariff, TariffError, TariffKind, price_stay

_KNOWN = {
    "kind", "unit_minutes", "free_minutes", "cap_per_24h_fen", "max_per_stay_fen", "visit_fee_fen", "bands",
}


def tariff_from_mapping(values: Mapping[str, Any], time_zone: str) -> Tariff:
    """A tariff from a TOML/JSON table; ``TariffError`` names the field that is wrong."""
    unknown = set(values) - _KNOWN
    if unknown:
        raise TariffError(sorted(unknown)[0], f"unknown setting (known: {', '.join(sorted(_KNOWN))})")
    kind_text = str(values.get("kind", "")).lower()
    try:
        kind = TariffKind(kind_text)
    except ValueError:
        raise TariffError("kind", f"{kind_text!r} is not per_visit or per_time") from None
    bands = tuple(
        Band.parse(str(b.get("start", "")), int(b.get("unit_fee_fen", 0)), f"bands[{i}]")
        for i, b in enumerate(values.get("bands", ()))
    )
    return Tariff(
        kind=kind,
        time_zone=time_zone,
        visit_fee_fen=int(values.get("visit_fee_fen", 0)),
        unit_minutes=int(values.get("unit_minutes", 60)),
        bands=bands,
        free_minutes=int(values.get("free_minutes", 0)),
        cap_per_24h_fen=int(values.get("cap_per_24h_fen", 0)),
        max_per_stay_fen=int(values.get("max_per_stay_fen", 0)),
    )


def load_tariff(path: Path, time_zone: str) -> Tariff:
    """The lot's temporary tariff from a TOML file (a ``[tariff]`` table or the top level)."""
    with path.open("rb") as handle:
        values = tomllib.load(handle)
    return tariff_from_mapping(values.get("tariff", values), time_zone)


def tariff_from_pb(message: settlement_pb2.Tariff, time_zone: str) -> Tariff:
    """An agreed tariff version as the platform sent it."""
    from datetime import UTC

    kind = {
        settlement_pb2.TARIFF_KIND_PER_VISIT: TariffKind.PER_VISIT,
        settlement_pb2.TARIFF_KIND_PER_TIME: TariffKind.PER_TIME,
    }
    if message.kind not in kind:
        raise TariffError("kind", f"tariff version {message.version} has no kind")
    return Tariff(
        kind=kind[message.kind],
        time_zone=time_zone,
        visit_fee_fen=message.visit_fee_fen,
        unit_minutes=message.unit_minutes or 60,
        bands=tuple(Band.parse(b.start, b.unit_fee_fen, f"bands[{i}]") for i, b in enumerate(message.bands)),
        free_minutes=message.free_minutes,
        cap_per_24h_fen=message.cap_per_24h_fen,
        max_per_stay_fen=message.max_per_stay_fen,
        version=message.version,
        effective_from=message.effective_from.ToDatetime(tzinfo=UTC) if message.HasField("effective_from") else None,
        lot_id=message.lot_id,
    )


def temporary_pricer(tariff: Tariff | None) -> PriceTemporary:
    """``[start, end)`` → fen under the lot's temporary tariff; free when the lot has none."""

    def price(start: datetime, end: datetime) -> int:
        if tariff is None or end <= start:
            return 0
        return price_stay(tariff, start, end).fee_fen

    return price
