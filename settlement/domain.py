"""Passages (进出场记录) and stays: the rules of DESIGN section 6 that decide whether the platform
accepts a reported passage, and how entries and exits join into stays. Pure: no I/O; the caller
hands in what the database already holds."""

from __future__ import annotations

import enum
import re
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import NamedTuple

from crosspark.plate import PlateError, validate

ENTRY = 1
EXIT = 2
#: PassageFlag numbers (crosspark.v1) that change settlement.
FLAG_EXIT_WITHOUT_ENTRY = 3
FLAG_CARD_ENDED_IN_STAY = 6
MAX_FUTURE_US = 5 * 60 * 1_000_000
EARLIEST_US = 946_684_800 * 1_000_000  # 2000-01-01T00:00Z: anything earlier is a broken lot clock
MAX_ID_LENGTH = 64
MAX_BATCH = 1000
COLORS = frozenset({"blue", "yellow", "black", "white", "green", "yellow_green", "blue_white"})

_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


class Ack(enum.IntEnum):
    """A passage's ack; the numbers are crosspark.v1.AckResult's."""

    ACCEPTED = 1
    DUPLICATE = 2
    REJECTED = 3


@dataclass(slots=True)
class Passage:
    """A passage as reported by a lot; instants are epoch microseconds, ``flags`` a bit set."""

    passage_id: str
    lot_id: str
    gate_id: str
    direction: int
    plate: str
    color: str
    source: str
    occurred_us: int
    card_id: str = ""
    stay_id: str = ""
    entry_passage_id: str = ""
    flags: int = 0
    membership_answer_id: str = ""
    card_valid_until_us: int | None = None

    def has(self, flag: int) -> bool:
        return bool(self.flags & (1 << flag))


class HeldEntry(NamedTuple):
    """What the platform holds of an entry passage, for joining an exit to it.

    ``HeldEntry``, ``Stay`` and ``Decision`` are named tuples rather than frozen dataclasses: one is
    built for nearly every passage ingested, and a frozen dataclass costs five times as much to
    build. A ``Stay`` is also a ``stays`` row as it stands (less the instant it was received)."""

    lot_id: str
    direction: int
    occurred_us: int
    card_id: str
    plate: str
    color: str


class Stay(NamedTuple):
    """A closed monthly-card stay, settled for ``[entry_us, settle_to_us)``."""

    stay_id: str
    lot_id: str
    card_id: str
    plate: str
    color: str
    entry_us: int
    exit_us: int
    settle_to_us: int
    entry_passage_id: str
    exit_passage_id: str
    flags: int


class Decision(NamedTuple):
    ack: Ack
    reason: str = ""
    stay: Stay | None = None


def is_passage_id(text: str) -> bool:
    """A UUID in canonical (lower-case) text form."""
    return len(text) == 36 and _UUID.fullmatch(text) is not None


@lru_cache(maxsize=65536)
def identity_problem(plate: str, color: str) -> str:
    """Why ``plate``/``color`` is not a valid vehicle identity ("" when it is)."""
    try:
        validate(plate)
    except PlateError as exc:
        return f"malformed identity: {exc} (rule {exc.rule})"
    if color not in COLORS:
        return "malformed identity: plate colour is unspecified"
    return ""


def check_passage(p: Passage, lot_id: str, now_us: int) -> str:
    """Rules that need nothing but the passage itself; the reason it is refused, or ""."""
    if _UUID.fullmatch(p.passage_id) is None:
        return "passage_id is not a canonical lower-case UUID"
    if p.lot_id != lot_id:
        return f"passage belongs to lot {p.lot_id!r}; this stream reports lot {lot_id!r}"
    if p.direction not in (ENTRY, EXIT):
        return "direction is unspecified"
    if len(p.gate_id) > MAX_ID_LENGTH or len(p.card_id) > MAX_ID_LENGTH or len(p.membership_answer_id) > MAX_ID_LENGTH:
        return f"gate_id, card_id and membership_answer_id are at most {MAX_ID_LENGTH} characters"
    problem = identity_problem(p.plate, p.color)
    if problem:
        return problem
    if p.occurred_us < EARLIEST_US:
        return "occurred_at is missing or before 2000-01-01"
    ahead = p.occurred_us - now_us
    if ahead > MAX_FUTURE_US:
        return f"occurred_at is {ahead // 1_000_000} s in the platform's future (at most 300 s allowed)"
    if p.direction == ENTRY:
        if p.stay_id not in ("", p.passage_id):
            return "an entry's stay_id must be its own passage_id"
        if p.entry_passage_id:
            return "an entry has no entry_passage_id"
        return ""
    if not p.entry_passage_id:
        return (
            ""
            if p.has(FLAG_EXIT_WITHOUT_ENTRY)
            else "exit without entry_passage_id (and not flagged EXIT_WITHOUT_ENTRY)"
        )
    if p.stay_id not in ("", p.entry_passage_id):
        return "an exit's stay_id must be its entry_passage_id"
    if p.flags & _CARD_ENDED and p.card_valid_until_us is None:
        return "flagged CARD_ENDED_IN_STAY without card_valid_until"
    return ""


def decide(
    passages: Sequence[Passage],
    lot_id: str,
    now_us: int,
    held: dict[str, HeldEntry | Passage],
    closed_stays: set[str],
    problems: Sequence[str] | None = None,
) -> list[Decision]:
    """Decide every passage of a batch (acks in the batch's order).

    ``held`` maps passage ids the platform already holds (those of the batch and the entries its
    exits name) to what it holds of them; ``closed_stays`` are stays already closed by an exit.
    Entries are decided first, so an exit finds an entry reported in the same batch whatever their
    order. Both arguments are updated with what this batch adds. ``problems``, when given, are the
    batch's ``check_passages`` (computed earlier, outside the caller's lock)."""
    if problems is None:
        problems = check_passages(passages, lot_id, now_us)
    decisions: list[Decision] = [_ACCEPTED] * len(passages)
    exits = []
    for i, p in enumerate(passages):  # entries inline: most passages are, and they need little
        if p.direction != ENTRY:
            exits.append(i)
        elif p.passage_id in held:
            decisions[i] = _DUPLICATE
        elif problems[i]:
            decisions[i] = Decision(Ack.REJECTED, problems[i])
        else:
            held[p.passage_id] = p  # a Passage has every field of a HeldEntry
    for i in exits:
        decisions[i] = decide_exit(passages[i], problems[i], lot_id, held, closed_stays)
    return decisions


def check_passages(passages: Sequence[Passage], lot_id: str, now_us: int) -> list[str]:
    """``check_passage`` of each passage of a batch, in its order."""
    return [check_passage(p, lot_id, now_us) for p in passages]


_DUPLICATE = Decision(Ack.DUPLICATE)
_ACCEPTED = Decision(Ack.ACCEPTED)
_CARD_ENDED = 1 << FLAG_CARD_ENDED_IN_STAY


def decide_exit(
    p: Passage, problem: str, lot_id: str, held: dict[str, HeldEntry | Passage], closed_stays: set[str]
) -> Decision:
    """An exit (or a passage of unspecified direction, which ``problem`` refuses), as ``decide``
    decides it after the entries of its batch; updates ``held`` and ``closed_stays`` likewise."""
    if p.passage_id in held:
        return _DUPLICATE
    if problem:
        return Decision(Ack.REJECTED, problem)
    stay = None
    if p.entry_passage_id:
        entry = held.get(p.entry_passage_id)
        if entry is None:
            if not is_passage_id(p.entry_passage_id):
                return Decision(Ack.REJECTED, "entry_passage_id is not a canonical lower-case UUID")
            return Decision(Ack.REJECTED, f"entry passage {p.entry_passage_id} is unknown to the platform")
        if entry.direction != ENTRY or entry.lot_id != lot_id:
            return Decision(Ack.REJECTED, f"passage {p.entry_passage_id} is not an entry of lot {lot_id!r}")
        if p.occurred_us < entry.occurred_us:
            return Decision(Ack.REJECTED, "exit occurred before its entry")
        if p.entry_passage_id in closed_stays:
            return Decision(Ack.REJECTED, f"stay {p.entry_passage_id} is already closed by another exit")
        card_id = p.card_id or entry.card_id
        if card_id:
            settle_to = p.occurred_us
            if p.flags & _CARD_ENDED and p.card_valid_until_us is not None:
                settle_to = min(max(p.card_valid_until_us, entry.occurred_us), p.occurred_us)
            stay = Stay(  # positional (order of the fields): this runs for every exit ingested
                p.entry_passage_id,
                lot_id,
                card_id,
                entry.plate,
                entry.color,
                entry.occurred_us,
                p.occurred_us,
                settle_to,
                p.entry_passage_id,
                p.passage_id,
                p.flags,
            )
        closed_stays.add(p.entry_passage_id)
    held[p.passage_id] = p
    return _ACCEPTED if stay is None else Decision(Ack.ACCEPTED, "", stay)
