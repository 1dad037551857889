#!/bin/bash
# Runs once, when the data directory is first initialised: one role and one
# database per service, named as the services' defaults (vigil_gateway, …).
set -euo pipefail
for svc in gateway challenge telephony billing; do
  var="VIGIL_${svc^^}_DB_PASSWORD"
  psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname postgres \
    -v name="vigil_$svc" -v password="${!var}" <<'SQL'
CREATE ROLE :"name" LOGIN PASSWORD :'password';
CREATE DATABASE :"name" OWNER :"name";
REVOKE ALL ON DATABASE :"name" FROM PUBLIC;
SQL
done
