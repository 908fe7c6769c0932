-- Hot path (throughput issue): no foreign-key check per resource and outbox row.
--
-- Every booking inserts three or so appointment_resources rows and an outbox row, each of
-- which fired a referential-integrity trigger that looked the appointment up again (an SPI
-- query with FOR KEY SHARE) although the same function had just inserted or locked it: about
-- a third of the cost of writing those rows. The engine writes these rows only for the
-- appointment it holds, so the check proves nothing on the hot path; what the constraints also
-- did, on DELETE of an appointment, is kept by one statement-level trigger: its resource rows
-- go with it and outbox rows forget it, as ON DELETE CASCADE / SET NULL did. (Orders keep
-- their foreign key: they are written far more rarely.)

ALTER TABLE appointment_resources DROP CONSTRAINT appointment_resources_appointment_id_fkey;
ALTER TABLE outbox DROP CONSTRAINT outbox_appointment_id_fkey;

CREATE FUNCTION radsched_appointments_deleted() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM appointment_resources AS r USING gone AS g WHERE r.appointment_id = g.id;
    UPDATE outbox AS o SET appointment_id = NULL FROM gone AS g WHERE o.appointment_id = g.id;
    RETURN NULL;
END
$$;

CREATE TRIGGER appointments_deleted AFTER DELETE ON appointments
    REFERENCING OLD TABLE AS gone FOR EACH STATEMENT
    EXECUTE FUNCTION radsched_appointments_deleted();
