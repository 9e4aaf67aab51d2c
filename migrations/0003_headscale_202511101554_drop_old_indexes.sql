-- Headscale migration 202511101554-drop-old-idx (v0.27.1): drop indexes of those legacy tables
-- (normally already gone with them).
DROP INDEX IF EXISTS idx_namespaces_deleted_at;
DROP INDEX IF EXISTS idx_routes_deleted_at;
DROP INDEX IF EXISTS idx_shared_machines_deleted_at;
