-- users_provider_username repeats the index of UNIQUE (provider_id, username)
-- column for column: every user insert and every change of username paid
-- for a second copy that no query needs.
DROP INDEX IF EXISTS users_provider_username;
