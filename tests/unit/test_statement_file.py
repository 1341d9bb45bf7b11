"""The statement file of DESIGN section 8: layout, round trip, digest and signature."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from settlement import statement_file as sf

T0 = datetime(2026, 11, 3, 11, 30, tzinfo=UTC)
HEADER = sf.StatementHeader(
    statement_id="stmt_lot-a_3",
    lot_id="lot-a",
    seq=3,
    settlement_period="MONTHLY",
    period_from=datetime(2026, 10, 31, 16, tzinfo=UTC),
    period_to=datetime(2026, 11, 30, 16, tzinfo=UTC),
    time_zone="Asia/Shanghai",
    issued_at=datetime(2026, 11, 30, 17, tzinfo=UTC),
    key_id="00112233aabbccdd",
)


def line(n: int, fee: int, **kw: object) -> sf.StatementLine:
    fields: dict[str, object] = dict(
        line_no=n,
        kind="STAY",
        stay_id=f"s{n}",
        card_id="card_1",
        plate="粤B12345",
        color="blue",
        entry_at=T0,
        exit_at=T0 + timedelta(hours=2),
        duration_seconds=7200,
        units=2,
        visits=0,
        tariff_version=1,
        fee_fen=fee,
        entry_passage_id=f"s{n}",
        exit_passage_id=f"x{n}",
    )
    fields.update(kw)
    return sf.StatementLine(**fields)  # type: ignore[arg-type]


def test_file_starts_with_bom_and_comment_header() -> None:
    data = sf.render(HEADER, [line(1, 2500)])
    assert data.startswith("\ufeff# crosspark statement".encode())


def test_file_header_names_period_with_time_zone() -> None:
    text = sf.render(HEADER, []).decode()
    assert "# period: [2026-11-01T00:00:00+08:00, 2026-12-01T00:00:00+08:00) Asia/Shanghai\r\n" in text


def test_rows_carry_money_in_yuan_with_two_decimals() -> None:
    text = sf.render(HEADER, [line(1, 2505)]).decode()
    assert ",25.05," in text


def test_summary_lines_give_count_and_total() -> None:
    text = sf.render(HEADER, [line(1, 2500), line(2, 1)]).decode()
    assert text.endswith("# line_count: 2\r\n# visit_count: 0\r\n# total_fee_yuan: 25.01\r\n")


def test_round_trip_keeps_every_field() -> None:
    lines = [line(1, 2500), line(2, -300, kind="ADJUSTMENT", adjusts="stmt_lot-a_2#7", late=True)]
    document = sf.parse(sf.render(HEADER, lines))
    assert (document.header, document.lines) == (HEADER, lines)


def test_summary_that_disagrees_with_lines_is_refused() -> None:
    data = sf.render(HEADER, [line(1, 2500)]).replace(b"total_fee_yuan: 25.00", b"total_fee_yuan: 26.00")
    with pytest.raises(sf.StatementFileError):
        sf.parse(data)


@given(st.integers(-(10**12), 10**12))
def test_yuan_text_round_trips_exactly(fen: int) -> None:
    assert sf.fen_of(sf.yuan(fen)) == fen


def test_signature_verifies_with_public_key() -> None:
    key = sf.new_private_key()
    data = sf.render(HEADER, [line(1, 2500)])
    sf.verify(data, sf.sign(key, data), sf.public_key_of(key), sf.sha256_hex(data))


def test_tampered_file_fails_signature() -> None:
    key = sf.new_private_key()
    data = sf.render(HEADER, [line(1, 2500)])
    signature = sf.sign(key, data)
    with pytest.raises(sf.StatementFileError, match="signature"):
        sf.verify(data.replace(b"25.00", b"15.00"), signature, sf.public_key_of(key))


def test_wrong_digest_is_refused() -> None:
    key = sf.new_private_key()
    data = sf.render(HEADER, [])
    with pytest.raises(sf.StatementFileError, match="SHA-256"):
        sf.verify(data, sf.sign(key, data), sf.public_key_of(key), "0" * 64)


@given(st.integers(-(2**31), 2**33), st.sampled_from(["Asia/Shanghai", "America/New_York", "Asia/Kathmandu", "UTC"]))
def test_vectorised_instant_text_matches_isoformat(second: int, zone: str) -> None:
    from zoneinfo import ZoneInfo

    import numpy as np

    expected = datetime.fromtimestamp(second, UTC).astimezone(ZoneInfo(zone)).isoformat(timespec="seconds")
    assert sf.format_instants(np.array([second]), zone) == [expected]
