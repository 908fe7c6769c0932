"""Conflict findings around the rule engine: bookings, stored findings, AI review, reports.

- ``bookings``: the candidate ``Booking`` a message describes (merged with the stored
  appointment for S13/S14, as persist will store it), stored rows as bookings, and the
  advisory lock names that serialise bookings of one slot or one patient.
- ``findings``: the JSON stored in ``appointments.conflicts`` and the mirrored entries that
  keep a conflict visible on both appointments.
- ``review``: the ``ai_analysis`` outbox handler (Claude, after commit).
- ``report``: ``radsched-engine conflicts APPOINTMENT``.
"""
