"""The demo's month, planned up front from a seed: lots, tariffs, cards and every visit.

Nothing here does I/O; ``crosspark.demo.run`` plays the plan against real processes.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

from crosspark.identity import PlateColor
from crosspark.plate import DIGITS, LETTERS, PROVINCES

TZ = ZoneInfo("Asia/Shanghai")


@dataclass(frozen=True)
class LotPlan:
    lot_id: str
    name: str
    vendor: str
    mode: str  # MembershipMode name without prefix
    period: str  # SettlementPeriod name without prefix
    evidence: str  # "camera", "etc" or "both"
    tariff: dict[str, object]  # Tariff fields (money in fen)
    tariff_label: str


@dataclass(frozen=True)
class CardPlan:
    request_id: str
    plate: str
    color: PlateColor
    holder_name: str
    holder_phone: str
    start_date: date
    months: int
    scope: tuple[str, ...] = ()


@dataclass(frozen=True)
class Visit:
    lot_id: str
    plate: str
    color: PlateColor
    entry_at: datetime
    exit_at: datetime
    monthly: bool  # the vehicle holds a card valid at this lot at entry (before any outage)
    has_obu: bool


@dataclass
class Plan:
    month_start: datetime
    month_end: datetime
    lots: list[LotPlan]
    cards: list[CardPlan]
    visits: list[Visit]
    outage: tuple[datetime, datetime]
    #: The stay whose platform record (and so fee) the demo deliberately corrupts.
    wrong_fee_visit: Visit
    card_ending_in_stay: Visit
    temporary_plates: list[tuple[str, PlateColor]] = field(default_factory=list)

    @property
    def events(self) -> list[tuple[datetime, str, Visit]]:
        """Every gate event of the month in time order: (instant, "entry"/"exit", visit)."""
        items = [(v.entry_at, "entry", v) for v in self.visits] + [(v.exit_at, "exit", v) for v in self.visits]
        return sorted(items, key=lambda item: (item[0], item[1] == "entry"))


LOTS = [
    LotPlan(
        "lot-camera",
        "东门停车场 (camera)",
        "VendorA",
        "ONLINE",
        "PER_EXIT",
        "camera",
        {"kind": "PER_VISIT", "visit_fee_fen": 500},
        "per visit ¥5.00",
    ),
    LotPlan(
        "lot-etc",
        "服务区停车场 (ETC)",
        "VendorB",
        "CACHED",
        "DAILY",
        "etc",
        {"kind": "PER_TIME", "unit_minutes": 60, "bands": [("00:00", 300)], "free_minutes": 15},
        "flat ¥3.00/h, 15 min free",
    ),
    LotPlan(
        "lot-mixed",
        "商场停车场 (camera + ETC)",
        "VendorC",
        "ONLINE_FALLBACK",
        "MONTHLY",
        "both",
        {
            "kind": "PER_TIME",
            "unit_minutes": 30,
            "bands": [("08:00", 400), ("20:00", 150)],
            "free_minutes": 10,
            "cap_per_24h_fen": 4000,
        },
        "day ¥4.00/30 min, night ¥1.50/30 min, cap ¥40/24 h",
    ),
]


def _plate(rng: random.Random, used: set[str], new_energy: bool = False) -> str:
    letters = LETTERS.replace("D", "").replace("F", "")
    while True:
        head = rng.choice(PROVINCES[:12]) + rng.choice(letters)
        if new_energy:
            body = rng.choice("DF") + rng.choice(letters + DIGITS) + "".join(rng.choice(DIGITS) for _ in range(4))
        else:
            body = "".join(rng.choice(DIGITS if i != 1 else letters + DIGITS) for i in range(5))
        plate = head + body
        if plate not in used:
            used.add(plate)
            return plate


def make_plan(
    seed: int = 7,
    *,
    days: int = 31,
    monthly_vehicles: int = 24,
    temporary_vehicles: int = 30,
    visits_per_lot_day: int = 8,
) -> Plan:
    """A month of traffic at three lots; the same seed gives the same month."""
    rng = random.Random(seed)
    month_start = datetime(2026, 10, 1, tzinfo=TZ)
    month_end = month_start + timedelta(days=days)
    used: set[str] = set()
    lot_ids = [lot.lot_id for lot in LOTS]

    cards: list[CardPlan] = []
    members: list[tuple[str, PlateColor, tuple[str, ...]]] = []
    for i in range(monthly_vehicles):
        new_energy = i % 6 == 5
        plate = _plate(rng, used, new_energy)
        color = PlateColor.GREEN if new_energy else (PlateColor.YELLOW if i % 11 == 10 else PlateColor.BLUE)
        scope: tuple[str, ...] = () if i % 5 else (lot_ids[i % 3],)
        cards.append(
            CardPlan(f"demo-card-{i}", plate, color, f"车主{i:02d}", f"1380000{i:04d}", date(2026, 9, 20), 3, scope)
        )
        members.append((plate, color, scope))
    # A card that ends on 10-15 00:00, for a vehicle that will be inside lot-mixed then.
    ending_plate = _plate(rng, used)
    cards.append(
        CardPlan("demo-card-ending", ending_plate, PlateColor.BLUE, "车主到期", "13900000000", date(2026, 9, 15), 1)
    )
    temporaries = [(_plate(rng, used), PlateColor.BLUE) for _ in range(temporary_vehicles)]

    visits: list[Visit] = []
    busy_until: dict[str, datetime] = {}
    for day in range(days):
        base = month_start + timedelta(days=day)
        for lot in LOTS:
            for k in range(visits_per_lot_day):
                monthly = k < visits_per_lot_day * 5 // 8
                if monthly:
                    plate, color, scope = rng.choice(members)
                    valid_here = not scope or lot.lot_id in scope
                else:
                    plate, color = rng.choice(temporaries)
                    valid_here = False
                entry = base + timedelta(minutes=rng.randrange(6 * 60, 22 * 60))
                if busy_until.get(plate, month_start) > entry:
                    continue  # that vehicle is parked somewhere else right now
                stay = timedelta(minutes=rng.choice([5, 25, 50, 95, 180, 330, 600, 780]) + rng.randrange(0, 20))
                exit_at = min(entry + stay, month_end - timedelta(minutes=1))
                busy_until[plate] = exit_at + timedelta(minutes=30)
                visits.append(Visit(lot.lot_id, plate, color, entry, exit_at, valid_here, monthly))
    ending_visit = Visit(
        "lot-mixed",
        ending_plate,
        PlateColor.BLUE,
        datetime(2026, 10, 14, 19, 40, tzinfo=TZ),
        datetime(2026, 10, 15, 9, 5, tzinfo=TZ),
        True,
        True,
    )
    visits.append(ending_visit)
    # A monthly stay at lot-etc that the platform holds, not yet stated, when the outage begins:
    # the demo corrupts its platform record while the platform is down.
    wrong_plate, wrong_color, _ = next(m for m in members if not m[2])
    wrong_fee_visit = Visit(
        "lot-etc",
        wrong_plate,
        wrong_color,
        datetime(2026, 10, 10, 7, 30, tzinfo=TZ),
        datetime(2026, 10, 10, 10, 45, tzinfo=TZ),
        True,
        True,
    )
    wrong_day = wrong_fee_visit.entry_at.date()
    visits = [v for v in visits if not (v.plate == wrong_plate and v.entry_at.date() == wrong_day)]
    visits.append(wrong_fee_visit)
    outage = (datetime(2026, 10, 10, 12, 0, tzinfo=TZ), datetime(2026, 10, 11, 18, 0, tzinfo=TZ))
    return Plan(
        month_start=month_start,
        month_end=month_end,
        lots=list(LOTS),
        cards=cards,
        visits=visits,
        outage=outage,
        wrong_fee_visit=wrong_fee_visit,
        card_ending_in_stay=ending_visit,
        temporary_plates=temporaries,
    )
