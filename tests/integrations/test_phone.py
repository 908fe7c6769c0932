"""Choosing and normalizing the SMS number from PID-13/14 (XTN) repetitions."""

from __future__ import annotations

import pytest

from radsched_engine.domain.model import Phone
from radsched_engine.integrations.phone import PhoneChoice, choose_sms_number, normalize


def test_single_free_text_number_is_normalized_to_e164() -> None:
    assert choose_sms_number([Phone("(617)555-0123")]) == PhoneChoice("+16175550123", "ok")


@pytest.mark.parametrize("raw", ["617-555-0123", "6175550123", "1-617-555-0123", "617.555.0123",
                                 "+1 617 555 0123"])
def test_us_spellings_give_the_same_number(raw: str) -> None:
    assert choose_sms_number([Phone(raw, "PRN", "PH")]).e164 == "+16175550123"


def test_extension_and_xtn1_suffixes_are_kept_out() -> None:
    for raw in ("(617)555-0123X123", "617-555-0123 ext. 55", "(617)555-0123B45",
                "(617)555-0123 C call evenings"):
        assert normalize(raw) == ("+16175550123", "ok"), raw


def test_cellular_repetition_is_preferred_over_an_earlier_home_phone() -> None:
    phones = [Phone("617.555.0123"), Phone("+18575550199", "PRN", "CP")]
    choice = choose_sms_number(phones)
    assert (choice.e164, choice.reason, choice.use, choice.equipment) == (
        "+18575550199", "ok", "PRN", "CP")


def test_mobile_word_in_use_code_counts_as_mobile() -> None:
    phones = [Phone("617-555-0123", "PRN", "PH"), Phone("857-555-0199", "MOBILE", "")]
    assert choose_sms_number(phones).e164 == "+18575550199"


def test_email_fax_beeper_and_emergency_repetitions_are_skipped() -> None:
    phones = [Phone("jane@example.org", "NET", "Internet"), Phone("617-555-0111", "WPN", "FX"),
              Phone("617-555-0112", "BPN", "BP"), Phone("617-555-0113", "EMR", "PH"),
              Phone("617-555-0123", "PRN", "PH")]
    assert choose_sms_number(phones).e164 == "+16175550123"


def test_only_an_email_means_no_number() -> None:
    assert choose_sms_number([Phone("", "NET", "Internet")]) == PhoneChoice(None, "no_number")
    assert choose_sms_number([Phone("jane@example.org", "NET", "Internet")]).reason == "no_number"
    assert choose_sms_number([]) == PhoneChoice(None, "no_number")


def test_personal_number_beats_an_earlier_work_number() -> None:
    phones = [Phone("617-555-0150", "WPN", "PH"), Phone("617-555-0123", "PRN", "PH")]
    assert choose_sms_number(phones).e164 == "+16175550123"


def test_work_number_is_used_when_it_is_the_only_one() -> None:
    assert choose_sms_number([Phone("617-555-0150", "WPN", "PH")]).e164 == "+16175550150"


def test_uk_numbers_need_the_gb_region() -> None:
    mobile = [Phone("07400 123456", "PRN", "PH")]
    assert choose_sms_number(mobile, region="GB").e164 == "+447400123456"
    assert choose_sms_number(mobile, region="US").reason == "invalid"


def test_explicit_country_code_wins_over_the_region() -> None:
    assert choose_sms_number([Phone("+44 7400 123456", "PRN", "CP")], "US").e164 == "+447400123456"


def test_uk_landline_is_not_mobile_and_a_uk_mobile_is_preferred_to_it() -> None:
    landline = Phone("020 7946 0958", "PRN", "PH")
    assert choose_sms_number([landline], "GB") == PhoneChoice(None, "not_mobile")
    choice = choose_sms_number([landline, Phone("07400 123456", "ORN", "PH")], "GB")
    assert choice.e164 == "+447400123456"


def test_toll_free_number_is_not_mobile() -> None:
    assert normalize("1-800-555-0199") == (None, "not_mobile")


@pytest.mark.parametrize("raw", ["garbage", "555-0123", "(555)555-1234", "12", "+", "x" * 500])
def test_garbage_is_invalid(raw: str) -> None:
    assert choose_sms_number([Phone(raw, "PRN", "PH")]) == PhoneChoice(None, "invalid")


def test_invalid_and_landline_together_report_not_mobile() -> None:
    phones = [Phone("garbage"), Phone("020 7946 0958")]
    assert choose_sms_number(phones, "GB").reason == "not_mobile"


def test_v25_components_built_number_with_cp() -> None:
    # The parser builds "+" + XTN.5 + XTN.6 + XTN.7 for "^PRN^CP^^1^617^5550123".
    assert choose_sms_number([Phone("+16175550123", "PRN", "CP")]).e164 == "+16175550123"


def test_choice_repr_of_a_failure_has_no_number() -> None:
    choice = choose_sms_number([Phone("617-555-019", "PRN", "PH")])
    assert choice.e164 is None and "617" not in repr(choice)
