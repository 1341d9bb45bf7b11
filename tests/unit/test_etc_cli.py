"""``crosspark etc decode``: the JSON contract of DESIGN section 15 and the human output."""

from __future__ import annotations

import json

from click.testing import CliRunner

from recognition_core.etc import Framing, wrap
from recognition_core.etc.cli import etc

YELLOW = "ffff28b3a1b2c3d400d4c14231323334350000000000010100f9ff"
ESCAPED = "ffff38b312fe0134fe0000bea941443132333435000000000401008aff"


def run(*args: str, stdin: str | None = None) -> list[str]:
    result = CliRunner().invoke(etc, ["decode", *args], input=stdin)
    assert result.exit_code == 0, result.output
    return result.output.splitlines()


def test_json_prints_one_line_per_frame_in_the_contract_shape():
    lines = [json.loads(line) for line in run("--json", YELLOW, ESCAPED)]
    assert lines == [
        {
            "ok": True,
            "framing": "lane",
            "frame_type": "B3",
            "obu_id": "a1b2c3d4",
            "vehicle": {"plate": "粤B12345", "color": "yellow", "vehicle_class": 1, "plate_valid": True},
        },
        {
            "ok": True,
            "framing": "lane",
            "frame_type": "B3",
            "obu_id": "12ff34fe",
            "vehicle": {"plate": "京AD12345", "color": "green", "vehicle_class": 1, "plate_valid": True},
        },
    ]


def test_a_bad_frame_is_an_ok_false_line_with_the_reason():
    bad = YELLOW[:-4] + "00ff"
    (line,) = run("--json", "--framing", "lane", bad)
    assert json.loads(line) == {"ok": False, "error": "lane: BCC is 00, the bytes give f9"}


def test_text_that_is_not_hex_is_reported_not_fatal():
    lines = [json.loads(line) for line in run("--json", "xyz", YELLOW)]
    assert [line["ok"] for line in lines] == [False, True]


def test_frame_without_vehicle_has_null_vehicle_and_null_obu_for_rsu_frames():
    (line,) = run("--json", wrap(Framing.GENVICT, 0xB2, b"\x00\x01\x01").hex())
    assert json.loads(line) == {"ok": True, "framing": "genvict", "frame_type": "B2", "obu_id": None, "vehicle": None}


def test_framing_option_refuses_a_frame_of_another_framing():
    (line,) = run("--json", "--framing", "its", YELLOW)
    assert json.loads(line)["ok"] is False


def test_dash_reads_frames_from_standard_input():
    lines = run("--json", "-", stdin=f"{YELLOW}\n\n{ESCAPED}\n")
    assert [json.loads(line)["obu_id"] for line in lines] == ["a1b2c3d4", "12ff34fe"]


def test_human_output_names_plate_colour_and_class():
    (line,) = run(YELLOW)
    assert "粤B12345 yellow class 1" in line and "a1b2c3d4" in line


def test_hex_with_spaces_is_accepted():
    (line,) = run("--json", " ".join(YELLOW[i : i + 2] for i in range(0, len(YELLOW), 2)))
    assert json.loads(line)["ok"] is True
