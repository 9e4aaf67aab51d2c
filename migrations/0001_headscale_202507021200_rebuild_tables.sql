-- Headscale migration 202507021200 (v0.27.0): rebuild every table into schema.sql's exact shape,
-- keeping all rows. migrate.py runs this inside the migration transaction with foreign_keys OFF,
-- after the older steps have made sure every source column below exists.
-- The CREATE statements are schema.sql's own (v0.27.1), so the result is byte-identical to a fresh file.

DROP TABLE IF EXISTS routes;

DROP INDEX IF EXISTS idx_users_deleted_at;
DROP INDEX IF EXISTS idx_provider_identifier;
DROP INDEX IF EXISTS idx_name_provider_identifier;
DROP INDEX IF EXISTS idx_name_no_provider_identifier;
DROP INDEX IF EXISTS idx_api_keys_prefix;
DROP INDEX IF EXISTS idx_policies_deleted_at;

DROP TABLE IF EXISTS users_old;
DROP TABLE IF EXISTS pre_auth_keys_old;
DROP TABLE IF EXISTS api_keys_old;
DROP TABLE IF EXISTS nodes_old;
DROP TABLE IF EXISTS policies_old;

ALTER TABLE users RENAME TO users_old;
ALTER TABLE pre_auth_keys RENAME TO pre_auth_keys_old;
ALTER TABLE api_keys RENAME TO api_keys_old;
ALTER TABLE nodes RENAME TO nodes_old;
ALTER TABLE policies RENAME TO policies_old;

CREATE TABLE users(
  id integer PRIMARY KEY AUTOINCREMENT,
  name text,
  display_name text,
  email text,
  provider_identifier text,
  provider text,
  profile_pic_url text,

  created_at datetime,
  updated_at datetime,
  deleted_at datetime
);

CREATE TABLE pre_auth_keys(
  id integer PRIMARY KEY AUTOINCREMENT,
  key text,
  user_id integer,
  reusable numeric,
  ephemeral numeric DEFAULT false,
  used numeric DEFAULT false,
  tags text,
  expiration datetime,

  created_at datetime,

  CONSTRAINT fk_pre_auth_keys_user FOREIGN KEY(user_id) REFERENCES users(id) ON DELETE SET NULL
);

CREATE TABLE api_keys(
  id integer PRIMARY KEY AUTOINCREMENT,
  prefix text,
  hash blob,
  expiration datetime,
  last_seen datetime,

  created_at datetime
);

CREATE TABLE nodes(
  id integer PRIMARY KEY AUTOINCREMENT,
  machine_key text,
  node_key text,
  disco_key text,

  endpoints text,
  host_info text,
  ipv4 text,
  ipv6 text,
  hostname text,
  given_name varchar(63),
  user_id integer,
  register_method text,
  forced_tags text,
  auth_key_id integer,
  last_seen datetime,
  expiry datetime,
  approved_routes text,

  created_at datetime,
  updated_at datetime,
  deleted_at datetime,

  CONSTRAINT fk_nodes_user FOREIGN KEY(user_id) REFERENCES users(id) ON DELETE CASCADE,
  CONSTRAINT fk_nodes_auth_key FOREIGN KEY(auth_key_id) REFERENCES pre_auth_keys(id)
);

CREATE TABLE policies(
  id integer PRIMARY KEY AUTOINCREMENT,
  data text,

  created_at datetime,
  updated_at datetime,
  deleted_at datetime
);

INSERT INTO users (id, name, display_name, email, provider_identifier, provider, profile_pic_url,
                   created_at, updated_at, deleted_at)
SELECT id, name, display_name, email, provider_identifier, provider, profile_pic_url,
       created_at, updated_at, deleted_at
FROM users_old;

INSERT INTO pre_auth_keys (id, key, user_id, reusable, ephemeral, used, tags, expiration, created_at)
SELECT id, key, user_id, reusable, ephemeral, used, tags, expiration, created_at
FROM pre_auth_keys_old;

INSERT INTO api_keys (id, prefix, hash, expiration, last_seen, created_at)
SELECT id, prefix, hash, expiration, last_seen, created_at
FROM api_keys_old;

INSERT INTO nodes (id, machine_key, node_key, disco_key, endpoints, host_info, ipv4, ipv6, hostname, given_name,
                   user_id, register_method, forced_tags, auth_key_id, last_seen, expiry, approved_routes,
                   created_at, updated_at, deleted_at)
SELECT id, machine_key, node_key, disco_key, endpoints, host_info, ipv4, ipv6, hostname, given_name,
       user_id, register_method, forced_tags, auth_key_id, last_seen, expiry, approved_routes,
       created_at, updated_at, deleted_at
FROM nodes_old;

INSERT INTO policies (id, data, created_at, updated_at, deleted_at)
SELECT id, data, created_at, updated_at, deleted_at
FROM policies_old;

CREATE INDEX idx_users_deleted_at ON users(deleted_at);
CREATE UNIQUE INDEX idx_provider_identifier ON users(
  provider_identifier
) WHERE provider_identifier IS NOT NULL;
CREATE UNIQUE INDEX idx_name_provider_identifier ON users(
  name,
  provider_identifier
);
CREATE UNIQUE INDEX idx_name_no_provider_identifier ON users(
  name
) WHERE provider_identifier IS NULL;
CREATE UNIQUE INDEX idx_api_keys_prefix ON api_keys(prefix);
CREATE INDEX idx_policies_deleted_at ON policies(deleted_at);

DROP TABLE users_old;
DROP TABLE pre_auth_keys_old;
DROP TABLE api_keys_old;
DROP TABLE nodes_old;
DROP TABLE policies_old;
