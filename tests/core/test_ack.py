"""ACK construction: the outcome table, MSH/MSA/ERR content, enhanced mode and version rules."""

from __future__ import annotations

import pytest

from radsched_engine.ack import AckBuilder, AckIdentity, ack_code_for, escape_text, wants_reply
from radsched_engine.errors import Location, Problem
from radsched_engine.exchange import Outcome
from radsched_engine.hl7.msh import STANDARD, sniff_msh


def header(version="2.5", msh15="", msh16="", control=" 38762", delims="|^~\\&"):
    f = delims[0]
    fields = ["MSH", delims[1:], "RIS", "HOSP", "RADS", "RAD", "20250101", "", f"SIU{delims[1]}S14",
              control, "T", version, "", "", msh15, msh16]
    return sniff_msh(f.join(fields).encode() + b"\rPID|1\r")


def segs(payload: bytes) -> list[list[str]]:
    return [s.split("|") for s in payload.decode().split("\r") if s]


@pytest.mark.parametrize(("outcome", "code", "original", "enhanced"), [
    (Outcome.ACCEPTED, None, "AA", "CA"),
    (Outcome.FILTERED, None, "AA", "CA"),
    (Outcome.DUPLICATE, None, "AA", "CA"),
    (Outcome.REJECTED, 101, "AE", "CE"),
    (Outcome.REJECTED, 204, "AE", "CE"),
    (Outcome.REJECTED, 200, "AR", "CR"),
    (Outcome.REJECTED, 203, "AR", "CR"),
    (Outcome.RETRY, 207, "AR", "CE"),
    (Outcome.ERROR, 207, "AR", "CE"),
])
def test_outcome_table(outcome, code, original, enhanced):
    assert ack_code_for(outcome, code) == original
    assert ack_code_for(outcome, code, enhanced=True) == enhanced


def test_aa_swaps_sender_and_receiver_and_echoes_control_id_verbatim():
    msh, msa = segs(AckBuilder(AckIdentity("ENGINE", "RADDEPT")).build(header(), "AA"))
    assert msh[2:6] == ["ENGINE", "RADDEPT", "RIS", "HOSP"]
    assert msh[8] == "ACK^S14^ACK"
    assert msh[9] != " 38762" and msh[9]           # a new unique control id
    assert msh[10] == "T" and msh[11] == "2.5"
    assert msa == ["MSA", "AA", " 38762"]


def test_ack_control_ids_are_unique():
    b = AckBuilder()
    ids = {segs(b.build(header(), "AA"))[0][9] for _ in range(1000)}
    assert len(ids) == 1000


def test_empty_identity_mirrors_inbound_receiver():
    msh = segs(AckBuilder(AckIdentity("", "")).build(header(), "AA"))[0]
    assert msh[2:4] == ["RADS", "RAD"]


def test_v25_error_has_err2_err3_err4_err7():
    p = Problem(204, "No appointment with filler id 2196178", Location("SCH", 1, 2, 1))
    _msh, msa, err = segs(AckBuilder().build(header(), "AE", p, user_text="Unknown appointment"))
    assert msa == ["MSA", "AE", " 38762", "Unknown appointment"]
    assert err[2] == "SCH^1^2^1"
    assert err[3] == "204^Unknown key identifier^HL70357"
    assert err[4] == "E"
    assert err[7] == "No appointment with filler id 2196178"
    assert err[8] == "Unknown appointment"


def test_component_location_is_written_in_full():
    p = Problem(101, "PID-3.1 is required", Location("PID", 1, 3, 1, 1))
    err = segs(AckBuilder().build(header(), "AE", p))[2]
    assert err[2] == "PID^1^3^1^1"


def test_pre_25_versions_use_err1_eld():
    p = Problem(204, "No appointment", Location("SCH", 1, 2, 1))
    msh, _msa, err = segs(AckBuilder().build(header("2.3"), "AE", p))
    assert msh[8] == "ACK^S14"
    assert err == ["ERR", "SCH^1^2^204&Unknown key identifier&HL70357"]


def test_warnings_ride_on_aa_for_v25_only():
    w = Problem(100, "unknown segment ZZZ ignored", Location("ZZZ", 1), severity="W")
    assert len(segs(AckBuilder().build(header("2.5"), "AA", warnings=[w]))) == 3
    assert len(segs(AckBuilder().build(header("2.3"), "AA", warnings=[w]))) == 2


def test_unsupported_version_answers_in_default_version():
    msh = segs(AckBuilder().build(header("9.9"), "AR", Problem(203, "version 9.9 not accepted")))[0]
    assert msh[11] == "2.5"


def test_no_header_gives_best_effort_ar():
    msh, msa, err = segs(AckBuilder().build(None, "AR", Problem(100, "no MSH segment")))
    assert msh[8] == "ACK" and msa[:3] == ["MSA", "AR", ""]
    assert err[3].startswith("100^")


def test_custom_delimiters_are_used_in_the_ack():
    h = header(delims="#!@%*")
    payload = AckBuilder().build(h, "AE", Problem(101, "a#b!c", Location("PID", 1, 3)))
    text = payload.decode()
    assert text.startswith("MSH#!@%*#")
    assert "%F%" in text and "%S%" in text      # delimiters in text are escaped with MSH-2's escape


def test_escape_text_escapes_every_delimiter():
    assert escape_text("a|b^c~d\\e&f", STANDARD) == "a\\F\\b\\S\\c\\R\\d\\E\\e\\T\\f"


@pytest.mark.parametrize(("msh15", "msh16", "success", "send", "enhanced"), [
    ("", "", True, True, False),
    ("", "", False, True, False),
    ("AL", "", True, True, True),
    ("NE", "", True, True, False),       # no commit ACK; MSH-16 empty = AL: the application ACK
    ("NE", "NE", True, False, False),
    ("ER", "", True, True, False),
    ("ER", "NE", True, False, False),
    ("ER", "", False, True, True),
    ("SU", "", False, True, False),
    ("SU", "ER", False, True, False),
    ("SU", "SU", False, False, False),
    ("", "AL", False, True, False),
    ("", "NE", True, False, False),
])
def test_enhanced_mode_rules(msh15, msh16, success, send, enhanced):
    assert wants_reply(header(msh15=msh15, msh16=msh16), success) == (send, enhanced)


def test_original_mode_setting_ignores_msh15():
    assert wants_reply(header(msh15="NE"), True, mode="original") == (True, False)
