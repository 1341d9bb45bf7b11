"""Checking a statement against the lot's own records (费用核对, DESIGN section 9). Pure.

Every monthly-card stay is recomputed from the lot's records with the tariff agreed with the
platform (the version in force at the stay's entry), over the platform's part of the stay
(``[entry, card end)`` when the card ended inside it), and compared by stay id:

* ``MATCHED`` / ``FEE_MISMATCH``: both have the stay; the fees agree or not;
* ``UNKNOWN_TO_LOT``: the statement bills a stay the lot has no record of;
* ``MISSING_IN_STATEMENT``: the lot has a stay that exited in the period, whose exit the platform
  had acknowledged before the statement was issued, and the statement does not bill it. Stays
  acknowledged later are not claimed: they arrive as ``late`` lines of the next statement.

``ADJUSTMENT`` lines correct an earlier line (an operator's resolution); the lot has nothing of its
own to recompute them from, so they are listed in the report and counted as matched.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from settlement.statement_file import StatementLine
from settlement.tariff import Tariff, price_stay, tariff_in_force


class LineResult(enum.Enum):
    MATCHED = "MATCHED"
    FEE_MISMATCH = "FEE_MISMATCH"
    MISSING_IN_STATEMENT = "MISSING_IN_STATEMENT"
    UNKNOWN_TO_LOT = "UNKNOWN_TO_LOT"


@dataclass(frozen=True, slots=True)
class LotStay:
    """A monthly-card stay as the lot recorded it."""

    stay_id: str
    card_id: str
    plate: str
    color: str
    entered_at: datetime
    exited_at: datetime
    #: The card ended inside the stay: the platform's part ends here.
    split_at: datetime | None
    #: When the platform acknowledged the exit; None while it waits in the outbox.
    delivered_at: datetime | None

    @property
    def platform_end(self) -> datetime:
        return self.split_at if self.split_at is not None else self.exited_at


@dataclass(frozen=True, slots=True)
class Item:
    stay_id: str
    result: LineResult
    line_no: int = 0
    platform_fee_fen: int = 0
    lot_fee_fen: int = 0
    note: str = ""
    plate: str = ""
    entered_at: datetime | None = None
    exited_at: datetime | None = None


@dataclass(frozen=True)
class Outcome:
    """Every compared stay (one item each), the adjustment lines seen, and the totals."""

    items: list[Item]
    adjustments: list[StatementLine]

    @property
    def matched_count(self) -> int:
        return sum(1 for i in self.items if i.result is LineResult.MATCHED) + len(self.adjustments)

    @property
    def disputed(self) -> list[Item]:
        return [i for i in self.items if i.result is not LineResult.MATCHED]

    @property
    def all_matched(self) -> bool:
        return not self.disputed


def lot_fee(stay: LotStay, tariffs: Sequence[Tariff]) -> tuple[int | None, str]:
    """The lot's figure for the platform's part of a stay, or None with the reason."""
    tariff = tariff_in_force(tariffs, stay.entered_at)
    if tariff is None:
        return None, "no agreed tariff in force at the stay's entry"
    return price_stay(tariff, stay.entered_at, stay.platform_end).fee_fen, ""


def reconcile(
    lines: Sequence[StatementLine],
    known: dict[str, LotStay],
    in_period: Sequence[LotStay],
    tariffs: Sequence[Tariff],
    issued_at: datetime,
) -> Outcome:
    """Compare the statement's ``lines`` with the lot's stays: ``known`` are the lot's monthly
    stays by id (at least every stay the lines name), ``in_period`` those that exited in the
    statement's period."""
    items: list[Item] = []
    adjustments: list[StatementLine] = []
    billed: set[str] = set()
    for line in lines:
        if line.kind == "ADJUSTMENT":
            adjustments.append(line)
            continue
        billed.add(line.stay_id)
        stay = known.get(line.stay_id)
        if stay is None:
            items.append(
                Item(line.stay_id, LineResult.UNKNOWN_TO_LOT, line.line_no, line.fee_fen, 0,
                     "no monthly-card stay with this id in the lot's records", line.plate, line.entry_at, line.exit_at)
            )
            continue
        fee, why = lot_fee(stay, tariffs)
        if fee is None:
            result, fee, note = LineResult.FEE_MISMATCH, 0, why
        elif fee == line.fee_fen:
            result, note = LineResult.MATCHED, ""
        else:
            result, note = LineResult.FEE_MISMATCH, _mismatch_note(stay, line)
        items.append(
            Item(
                stay.stay_id, result, line.line_no, line.fee_fen, fee, note, stay.plate, stay.entered_at,
                stay.exited_at,
            )
        )
    for stay in in_period:
        if stay.stay_id in billed:
            continue
        if stay.delivered_at is None or stay.delivered_at > issued_at:
            continue  # reported after the statement was issued: expected as a late line next time
        fee, why = lot_fee(stay, tariffs)
        items.append(
            Item(stay.stay_id, LineResult.MISSING_IN_STATEMENT, 0, 0, fee or 0,
                 why or "the platform acknowledged this stay's exit before issuing the statement",
                 stay.plate, stay.entered_at, stay.exited_at)
        )
    return Outcome(items, adjustments)


def _mismatch_note(stay: LotStay, line: StatementLine) -> str:
    notes = []
    if int(stay.entered_at.timestamp()) != int(line.entry_at.timestamp()):
        notes.append(f"entry {stay.entered_at.isoformat()} vs {line.entry_at.isoformat()}")
    if int(stay.platform_end.timestamp()) != int(line.exit_at.timestamp()):
        notes.append(f"end {stay.platform_end.isoformat()} vs {line.exit_at.isoformat()}")
    return ("; ".join(notes) or "same instants, different fee")[:256]
