-- Smoke queries for recovery tests (NSYNC_SMOKE_SQL points at the file to use; this is the
-- default). One query per statement, separated by ";". Each must return at least one row, and
-- if its first column is a boolean, true. Write queries that prove the application could work
-- on the restored copy: key tables hold rows, recent data is there, configuration is present.
SELECT count(*) > 0 FROM information_schema.tables
 WHERE table_schema NOT IN ('pg_catalog', 'information_schema');
SELECT EXISTS (SELECT 1 FROM pg_roles WHERE rolcanlogin);
