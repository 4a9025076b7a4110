-- Run once by the postgres image on an empty data volume (/docker-entrypoint-initdb.d/).
-- One database per service, owned by the suite's role: a service never reads another's tables.
--
-- The password 'ecourt' is a LOCAL DEVELOPMENT credential: in docker-compose.yml PostgreSQL
-- publishes no port, so only containers on the compose network can reach it, and the superuser's
-- password comes from the git-ignored deploy/secrets/postgres_password. Production databases
-- get one role per service with a generated password (see deploy/README.md).

CREATE ROLE ecourt WITH LOGIN PASSWORD 'ecourt';

CREATE DATABASE identity   WITH OWNER ecourt ENCODING 'UTF8' TEMPLATE template0;
CREATE DATABASE filing     WITH OWNER ecourt ENCODING 'UTF8' TEMPLATE template0;
CREATE DATABASE matters    WITH OWNER ecourt ENCODING 'UTF8' TEMPLATE template0;
CREATE DATABASE documents  WITH OWNER ecourt ENCODING 'UTF8' TEMPLATE template0;
CREATE DATABASE delivery   WITH OWNER ecourt ENCODING 'UTF8' TEMPLATE template0;
CREATE DATABASE bankruptcy WITH OWNER ecourt ENCODING 'UTF8' TEMPLATE template0;
CREATE DATABASE notifier   WITH OWNER ecourt ENCODING 'UTF8' TEMPLATE template0;

-- Nobody but the owner (and the superuser) may connect to a service's database.
REVOKE CONNECT, TEMPORARY ON DATABASE identity, filing, matters, documents, delivery,
    bankruptcy, notifier FROM PUBLIC;
