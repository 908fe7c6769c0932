"""The lazy message view: delimiters, numbering, paths, nulls, terminators, stray bytes, charsets."""

from __future__ import annotations

import pytest

from radsched_engine.errors import Reject
from radsched_engine.hl7.message import Message, parse_path

from .helpers import hl7, sample

SIU = hl7(
    "MSH|^~\\&|RIS|HOSP|RADSCHED|RAD|20250301120000+0100||SIU^S12^SIU_S12| 0042|P|2.5.1|||AL|NE|"
    "|UNICODE UTF-8",
    "SCH|P1^RIS|F1^SCHED||||^Routine|||30|min|^^30^20250315090000^^R",
    "PID|1||111^^^HOSP^PI~222^^^HOSP^MR||Doe&van^Jane^Q||\"\"|F|||||^PRN^PH^^1^555^0100~^NET^Internet^x@y",
    "NTE|1||first line\\.br\\second line",
    "AIS|1|A|CTH^CT head|20250315090000",
    "AIS|2|A|CTC^CT chest|20250315093000",
)


def test_header_facts() -> None:
    m = Message.parse(SIU)
    assert m.message_code == "SIU" and m.trigger == "S12" and m.structure == "SIU_S12"
    assert m.type_trigger == "SIU^S12"
    assert m.control_id == " 0042"            # verbatim: the leading space is part of the id
    assert m.version == "2.5.1" and m.processing_id == "P"
    assert m.charset == "utf-8" and m.charset_note == ""
    assert m.raw is SIU


def test_msh_numbering() -> None:
    m = Message.parse(SIU)
    msh = m.segment("MSH")
    assert msh is not None and msh.index == 0
    assert msh.field(1) == "|" and msh.field(2) == "^~\\&" and msh.field(3) == "RIS"
    assert m.get("MSH-1") == "|" and m.get("MSH-2") == "^~\\&"
    assert m.get("MSH-9.2") == "S12" and m.get("MSH-10") == " 0042"
    assert m.get("MSH-18") == "UNICODE UTF-8"


def test_paths_repetitions_components_subcomponents() -> None:
    m = Message.parse(SIU)
    assert m.get("PID-3") == "111"
    assert m.get("PID-3[2].1") == "222" and m.get("PID-3[2].5") == "MR"
    assert m.get("PID-3[3].1") == "" and m.get("PID-3[3].1", "none") == "none"
    assert m.get("PID-5.1") == "Doe" and m.get("PID-5.1.2") == "van" and m.get("PID-5.2") == "Jane"
    assert m.get("SCH-11.4") == "20250315090000"
    assert m.get("AIS[2]-3.2") == "CT chest" and m.get("AIS[3]-3") == ""
    assert m.get("ZZZ-1") == "" and m.get("SCH-99") == ""
    assert m.raw_field("PID-3") == "111^^^HOSP^PI~222^^^HOSP^MR"
    assert m.raw_field("PID-3[2]") == "222^^^HOSP^MR"
    assert m.raw_field("PID-5.1") == "Doe&van"
    assert m.raw_field("PID-5.1.2") == "van"


def test_segments_in_order_and_by_id() -> None:
    m = Message.parse(SIU)
    assert [s.id for s in m.segments] == ["MSH", "SCH", "PID", "NTE", "AIS", "AIS"]
    assert [s.index for s in m.all("AIS")] == [4, 5]
    assert m.segment("AIS", 2) is m.all("AIS")[1]        # cached: one object per segment
    assert m.segment("AIS", 3) is None and m.segment("OBR") is None
    seg = m.segment("SCH")
    assert seg is not None
    assert seg.get(11, 4) == "20250315090000" and seg.get(11, 4, repetition=2) == ""
    assert seg.repetitions(11) == ["^^30^20250315090000^^R"]
    assert seg.field(0) == "" and seg.field(50) == "" and seg.get(50, 3) == ""


def test_explicit_null_is_not_empty() -> None:
    m = Message.parse(SIU)
    assert m.is_null("PID-7") and m.get("PID-7") == '""'
    assert not m.is_null("PID-8") and not m.is_null("PID-6")
    assert m.get("PID-6") == ""


def test_escapes_are_resolved_only_in_leaves() -> None:
    m = Message.parse(SIU)
    assert m.get("NTE-3") == "first line\nsecond line"
    assert m.raw_field("NTE-3") == "first line\\.br\\second line"


def test_all_five_basic_escapes() -> None:
    m = Message.parse(hl7("MSH|^~\\&|A|B|C|D|20250101||ADT^A01|1|P|2.5",
                          "OBX|1|ST|X||a \\F\\ b \\S\\ c \\T\\ d \\R\\ e \\E\\ f"))
    assert m.get("OBX-5") == "a | b ^ c & d ~ e \\ f"


def test_custom_delimiters() -> None:
    m = Message.parse(hl7("MSH#!@%*#SENDER#FAC#RECV#FAC#20260301120000##ADT!A01#MSG007#P#2.5",
                          "PID#1##12345!!!MRN@999!!!SSN##DOE!JOHN*X!A##19800101#M"))
    d = m.delimiters
    assert (d.field, d.component, d.repetition, d.escape, d.subcomponent) == ("#", "!", "@", "%", "*")
    assert m.type_trigger == "ADT^A01" and m.control_id == "MSG007"
    assert m.get("PID-3") == "12345" and m.get("PID-3.4") == "MRN" and m.get("PID-3[2].1") == "999"
    assert m.get("PID-5.2") == "JOHN" and m.get("PID-5.2.2") == "X"
    assert m.get("MSH-1") == "#" and m.get("MSH-2") == "!@%*"


def test_short_encoding_characters() -> None:
    # ``^\&``: no repetition separator at all, so "~" is plain data.
    m = Message.parse(hl7("MSH|^\\&|A||B||200007250712||ADT^A01|00003|D|2.3", "PID|1||19~19||Doe^John"))
    assert m.delimiters.repetition == ""
    assert m.get("PID-3") == "19~19" and m.get("PID-5.2") == "John"


def test_truncation_character_v27() -> None:
    m = Message.parse(hl7("MSH|^~\\&#|A|B|C|D|20250101||ORM^O01|1|P|2.3.1", "NTE|1||50\\P\\ off"))
    assert m.delimiters.truncation == "#" and m.get("NTE-3") == "50# off"


@pytest.mark.parametrize("sep", [b"\r", b"\n", b"\r\n"])
def test_segment_terminators(sep: bytes) -> None:
    raw = sep.join([b"MSH|^~\\&|A|B|C|D|20250101||SIU^S12|1|P|2.3", b"SCH|1|2", b"PID|1||42"]) + sep
    m = Message.parse(raw)
    assert [s.id for s in m.segments] == ["MSH", "SCH", "PID"]
    assert m.get("PID-3") == "42" and m.version == "2.3"


def test_mixed_terminators_keep_lf_inside_cr_messages_apart() -> None:
    raw = b"MSH|^~\\&|A|B|C|D|20250101||SIU^S12|1|P|2.3\rSCH|1|2\nPID|1||42\r\n\n"
    m = Message.parse(raw)
    assert [s.id for s in m.segments] == ["MSH", "SCH", "PID"]


def test_stray_framing_bytes_nul_and_junk_lines_are_dropped() -> None:
    raw = (b"\x0b\x0bMSH|^~\\&|A|B|C|D|20250101||SIU^S12|1|P|2.3\rSCH|1\x00|2\r\r||||\r|\r \r"
           b"PID|1||42\r\x1c\r\n")
    m = Message.parse(raw)
    assert [s.id for s in m.segments] == ["MSH", "SCH", "PID"]
    assert m.get("SCH-1") == "1" and m.malformed == ()


def test_bytes_before_msh_are_skipped() -> None:
    m = Message.parse(b"\xef\xbb\xbfMSH|^~\\&|A|B|C|D|20250101||SIU^S12|1|P|2.3\rPID|1||42\r")
    assert m.get("PID-3") == "42"


@pytest.mark.parametrize("raw", [b"", b"hello", b"PID|1||42\r", b"MSH", b"MSH1^~\\&|x", b"\x0b\x1c\r",
                                 b"MSH\rPID|1||12345678|x",
                                 b"MSH|^~\\&1|A|B"])
def test_no_usable_msh_is_reject_100(raw: bytes) -> None:
    with pytest.raises(Reject) as info:
        Message.parse(raw)
    assert info.value.code == 100 and str(info.value.location) == "MSH"


def test_malformed_segment_ids_are_flagged_and_can_be_rejoined() -> None:
    raw = (b"MSH|^~\\&|A|B|C|D|20250101||ORM^O01|1|P|2.3\nORC|NW|1\n"
           b"OBR|1|||||||||||||||||(608)258-\n8866||x|y\nDG1|1\n")
    m = Message.parse(raw)
    assert m.malformed == (3,)
    assert m.segment_ids == ["MSH", "ORC", "OBR", "8866", "DG1"]
    fixed = m.rejoined()
    assert fixed.malformed == () and fixed.segment_ids == ["MSH", "ORC", "OBR", "DG1"]
    assert fixed.get("OBR-18") == "(608)258-8866" and fixed.get("OBR-20") == "x"
    assert m.rejoined().raw is raw and fixed.rejoined() is fixed


def test_charset_declared_latin1() -> None:
    m = Message.parse(b"MSH|^~\\&|A|B|C|D|20250101||SIU^S12|1|P|2.5|||||DE|8859/1\rPID|1||1||M\xfcller\r")
    assert m.charset == "iso8859-1" and m.charset_note == ""
    assert m.get("PID-5") == "Müller"


def test_charset_undeclared_utf8() -> None:
    m = Message.parse("MSH|^~\\&|A|B|C|D|20250101||SIU^S12|1|P|2.5\rPID|1||1||Müller\r".encode())
    assert m.charset == "utf-8" and m.charset_note == "undeclared-utf8"
    assert m.get("PID-5") == "Müller"


def test_charset_declared_latin1_but_utf8() -> None:
    raw = "MSH|^~\\&|A|B|C|D|20250101||OMI^O23|1|P|2.5.1|||||DE|8859/1\rNTE|1||a \u2013 b\r".encode()
    m = Message.parse(raw)
    assert m.charset == "utf-8" and m.charset_note == "declared-8859/1-but-utf8"
    assert m.get("NTE-3") == "a \u2013 b"


def test_charset_fallback_cp1252_and_configured_default() -> None:
    raw = b"MSH|^~\\&|A|B|C|D|20250101||SIU^S12|1|P|2.5\rNTE|1||caf\xe9 \x93q\x94\r"
    m = Message.parse(raw)
    assert m.charset == "cp1252" and m.charset_note == "fallback-cp1252"
    assert m.get("NTE-3") == "café “q”"
    m = Message.parse(raw, default_charset="8859/15")
    assert m.charset == "iso8859-15" and m.charset_note == ""
    m = Message.parse(b"MSH|^~\\&|A|B|C|D|20250101||SIU^S12|1|P|2.5\rNTE|1||\x81\r",
                      fallback_charset="cp1252")
    assert m.charset == "latin-1" and m.charset_note == "fallback-latin-1"


def test_charset_spelling_utf8_is_recognised() -> None:
    m = Message.parse("MSH|^~\\&|A|B|C|D|20250101||SIU^S12|1|P|2.5|||||FR|UTF-8\rNTE|1||été\r".encode())
    assert m.charset == "utf-8" and m.charset_note == ""


def test_hex_escape_uses_message_charset() -> None:
    m = Message.parse(b"MSH|^~\\&|A|B|C|D|20250101||SIU^S12|1|P|2.5|||||BR|8859/1\r"
                      b"AIS|1|A|1^OPERA\\XC7\\\\XC3\\O\r")
    assert m.get("AIS-3.2") == "OPERAÇÃO"


def test_parse_path() -> None:
    p = parse_path("PID-3[2].4.1")
    assert (p.segment, p.occurrence, p.field, p.repetition, p.component, p.subcomponent) == (
        "PID", 1, 3, 2, 4, 1)
    assert parse_path("OBR[2]-4").occurrence == 2 and parse_path("OBR[2]-4").depth == 1
    for bad in ("PID", "PID-0", "pid-3", "PID-3.", "PID-3[0]", "PID 3"):
        with pytest.raises(ValueError):
            parse_path(bad)


def test_corpus_custom_and_two_char_samples() -> None:
    m = Message.parse(sample("adt_a01_rethink_custom_delimiters_1.hl7"))
    assert m.get("PID-5.1") == "DOE" and m.type_trigger == "ADT^A01"
    m = Message.parse(sample("bar_p01_hapi_npac_nonstd_encoding_chars_1.hl7"))
    assert m.delimiters.subcomponent == "}" and m.delimiters.escape == "\\"
    m = Message.parse(sample("adt_a01_rethink_escape_sequences_1.hl7"))
    assert m.get("PID-5.1") == "DOE&SMITH" and m.get("PID-5.2") == "JOHN^JANE"
