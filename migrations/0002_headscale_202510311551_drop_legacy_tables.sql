-- Headscale migration 202510311551 (v0.27.0): drop the tables of earlier eras that broken
-- upgrades may have left behind.
DROP TABLE IF EXISTS namespaces;
DROP TABLE IF EXISTS machines;
DROP TABLE IF EXISTS shared_machines;
DROP TABLE IF EXISTS kvs;
DROP TABLE IF EXISTS pre_auth_key_acl_tags;
DROP TABLE IF EXISTS routes;
