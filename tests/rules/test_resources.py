"""R1 room overlap (with capacity), R2 staff overlap, R7 STAT displacement, R3 patient double booking."""

from __future__ import annotations

import pytest

from radsched_engine.rules import RulesConfig, StaffPolicy

from .helpers import bk, of, run, severities

ROOM, STAFF, STAT, PAT = ("RES-ROOM-OVERLAP", "RES-STAFF-OVERLAP", "STAT-DISPLACES-ROUTINE",
                          "PAT-DOUBLE-BOOK")


def test_room_overlap_blocks_and_names_the_other_appointment() -> None:
    found = of(run(bk("A", 0), bk("B", 0.25)), ROOM)
    assert [(f.severity, f.other) for f in found] == [("block", "B")]
    assert found[0].details["resource"] == "CT1"


def test_back_to_back_slots_do_not_overlap() -> None:
    assert of(run(bk("A", 0, 30), bk("B", 0.5, 30), bk("C", -0.5, 30)), ROOM) == []


def test_one_minute_overlap_is_a_conflict() -> None:
    assert severities(run(bk("A", 0, 30), bk("B", 0.5 - 1 / 60, 30)), ROOM) == ["block"]


def test_other_rooms_do_not_conflict() -> None:
    assert of(run(bk("A", 0), bk("B", 0, rooms=("CT2",))), ROOM) == []


@pytest.mark.parametrize("status", ["cancelled", "deleted", "noshow", "dc"])
def test_inactive_slot_is_free(status: str) -> None:
    assert run(bk("A", 0), bk("B", 0, status=status)) == run(bk("A", 0))


def test_cancelled_candidate_has_no_findings() -> None:
    assert run(bk("A", 0, status="cancelled", codes=("74177",)), bk("B", 0)) == []


def test_booking_never_conflicts_with_itself() -> None:
    # An S14 modification is checked against the stored version of the same appointment.
    assert of(run(bk("A", 0), bk("A", 0.1)), ROOM) == []


@pytest.mark.parametrize("status", ["waitlist", "pending"])
def test_tentative_other_gives_a_warning_not_a_block(status: str) -> None:
    found = of(run(bk("A", 0), bk("B", 0, status=status)), ROOM)
    assert [f.severity for f in found] == ["warn"] and found[0].details["tentative"] is True


def test_tentative_candidate_is_never_blocked() -> None:
    assert severities(run(bk("A", 0, status="waitlist"), bk("B", 0)), ROOM) == ["warn"]


def test_overbook_status_downgrades_to_warning() -> None:
    assert severities(run(bk("A", 0, status="overbook"), bk("B", 0)), ROOM) == ["warn"]


def test_capacity_counts_concurrent_bookings() -> None:
    config = RulesConfig(capacities={"UPTAKE": 2})
    cand = bk("A", 0, 60, rooms=("UPTAKE",))
    one = bk("B", 0, 60, rooms=("UPTAKE",))
    two = bk("C", 0.5, 60, rooms=("UPTAKE",))
    assert of(run(cand, one, config=config), ROOM) == []
    found = of(run(cand, one, two, config=config), ROOM)
    assert sorted(f.other for f in found) == ["B", "C"]
    assert {f.severity for f in found} == {"block"} and found[0].details["capacity"] == 2


def test_capacity_sequential_others_never_exceed_it() -> None:
    config = RulesConfig(capacities={"UPTAKE": 2})
    cand = bk("A", 0, 60, rooms=("UPTAKE",))
    first = bk("B", 0, 30, rooms=("UPTAKE",))
    second = bk("C", 0.5, 30, rooms=("UPTAKE",))     # starts exactly when B ends
    assert of(run(cand, first, second, config=config), ROOM) == []


def test_uptake_bay_of_four() -> None:
    config = RulesConfig(capacities={"BAY": 4})
    cand = bk("A", 0, 60, rooms=("BAY",))
    others = [bk(f"O{i}", 0.1 * i, 60, rooms=("BAY",)) for i in range(3)]
    assert of(run(cand, *others, config=config), ROOM) == []
    assert len(of(run(cand, *others, bk("O9", 0.2, 60, rooms=("BAY",)), config=config), ROOM)) == 4


def test_technologist_double_booked_blocks() -> None:
    cand = bk("A", 0, staff=(("T7", "TECH"),))
    other = bk("B", 0, rooms=("MR1",), staff=(("T7", "TECH"),))
    found = of(run(cand, other), STAFF)
    assert [(f.severity, f.other) for f in found] == [("block", "B")]
    assert found[0].details["person"] == "T7"


def test_staff_back_to_back_is_fine() -> None:
    cand = bk("A", 0, staff=(("T7", "TECH"),))
    assert of(run(cand, bk("B", 0.5, rooms=("MR1",), staff=(("T7", "TECH"),))), STAFF) == []


def test_supervising_radiologist_allowed_up_to_concurrency() -> None:
    cand = bk("A", 0, staff=(("R1", "RADIOLOGIST"),))
    others = [bk(f"O{i}", 0, rooms=(f"CT{i + 2}",), staff=(("R1", "RADIOLOGIST"),)) for i in range(3)]
    assert of(run(cand, *others), STAFF) == []                       # 4 at once: allowed
    fourth = bk("O9", 0, rooms=("CT9",), staff=(("R1", "RADIOLOGIST"),))
    assert set(severities(run(cand, *others, fourth), STAFF)) == {"warn"}


def test_performing_role_on_either_side_decides() -> None:
    cand = bk("A", 0, staff=(("X1", "RADIOLOGIST"),))
    other = bk("B", 0, rooms=("US1",), staff=(("X1", "SONOGRAPHER"),))
    config = RulesConfig(staff=StaffPolicy(concurrency={}))
    assert severities(run(cand, other, config=config), STAFF) == ["block"]


def test_unknown_role_uses_default_and_roles_can_be_switched_off() -> None:
    cand = bk("A", 0, staff=(("Z", "ESCORT"),))
    other = bk("B", 0, rooms=("US1",), staff=(("Z", "ESCORT"),))
    assert severities(run(cand, other), STAFF) == ["warn"]
    quiet = RulesConfig(staff=StaffPolicy(roles={"ESCORT": "off"}))
    assert of(run(cand, other, config=quiet), STAFF) == []


def test_stat_displaces_routine_instead_of_being_blocked() -> None:
    cand = bk("S", 0, priority="S", staff=(("T7", "TECH"),))
    other = bk("B", 0, priority="R", staff=(("T7", "TECH"),))
    found = run(cand, other)
    assert of(found, ROOM) == [] and of(found, STAFF) == []
    bumped = of(found, STAT)
    assert len(bumped) == 1                                # room and staff: one displacement
    assert bumped[0].severity == "info" and bumped[0].other == "B"
    assert bumped[0].details["displaced_severity"] == "warn"


def test_unknown_priority_counts_as_routine() -> None:
    assert [f.other for f in of(run(bk("S", 0, priority="S"), bk("B", 0, priority="")), STAT)] == ["B"]


def test_stat_against_stat_is_a_warning_never_a_block() -> None:
    found = run(bk("S", 0, priority="S"), bk("S2", 0, priority="S"))
    assert severities(found, ROOM) == ["warn"] and of(found, STAT) == []


def test_stat_against_preop_is_a_warning() -> None:
    assert severities(run(bk("S", 0, priority="S"), bk("P", 0, priority="P")), ROOM) == ["warn"]


def test_routine_against_stat_is_blocked() -> None:
    assert severities(run(bk("A", 0), bk("S", 0, priority="S")), ROOM) == ["block"]


def test_stat_without_r7_is_still_never_blocked() -> None:
    found = run(bk("S", 0, priority="S"), bk("B", 0), config=RulesConfig(disabled=("R7",)))
    assert severities(found, ROOM) == ["warn"]


def test_patient_in_two_places_at_once_is_blocked() -> None:
    found = of(run(bk("A", 0, patient="H|1"), bk("B", 0.25, patient="H|1", rooms=("MR1",))), PAT)
    assert [(f.severity, f.other) for f in found] == [("block", "B")]


def test_patient_transfer_buffer_between_locations() -> None:
    cand = bk("A", 0, 30, patient="H|1")
    assert severities(run(cand, bk("B", 40 / 60, patient="H|1", rooms=("MR1",))), PAT) == ["warn"]
    assert severities(run(cand, bk("B", -40 / 60, patient="H|1", rooms=("MR1",))), PAT) == ["warn"]
    assert of(run(cand, bk("B", 45 / 60, patient="H|1", rooms=("MR1",))), PAT) == []   # exactly 15 min
    assert of(run(cand, bk("B", 0.5, patient="H|1", rooms=("CT1",))), PAT) == []       # same room


def test_other_patients_and_unknown_patients_are_not_double_booked() -> None:
    assert of(run(bk("A", 0, patient="H|1"), bk("B", 0, patient="H|2", rooms=("MR1",))), PAT) == []
    assert of(run(bk("A", 0, patient="H|"), bk("B", 0, patient="H|", rooms=("MR1",))), PAT) == []


def test_assigning_authority_is_part_of_the_patient_identity() -> None:
    assert of(run(bk("A", 0, patient="H1|7"), bk("B", 0, patient="H2|7", rooms=("MR1",))), PAT) == []


def test_linked_sub_appointments_do_not_conflict() -> None:
    inject = bk("INJ", 0, 15, patient="H|1", codes=("78306",), rooms=("NM1",), group="G1")
    image = bk("IMG", 0.1, 60, patient="H|1", codes=("78306",), rooms=("NM1",), group="G1")
    found = run(image, inject)
    assert [f for f in found if f.other == "INJ"] == []
