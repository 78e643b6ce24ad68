-- Why a pool is in its state (quarantined by its reliability, drained by
-- an operator), and since when: probation counts from it.
ALTER TABLE pools ADD COLUMN state_reason TEXT NOT NULL DEFAULT '';
ALTER TABLE pools ADD COLUMN state_changed_at BIGINT;
