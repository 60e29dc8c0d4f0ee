-- What real Defender for Endpoint tenants send that the first schema had no room for (issue 11).
-- Same conventions as 0001.

-- Device facts from GET /api/machines: the public address apart from the device's own ones, the
-- Windows build, the processor and the Entra join (get-machines, machine entity).
ALTER TABLE assets ADD COLUMN external_ip_address TEXT;
ALTER TABLE assets ADD COLUMN os_build BIGINT;
ALTER TABLE assets ADD COLUMN os_processor TEXT;
ALTER TABLE assets ADD COLUMN is_aad_joined BOOLEAN;
-- 'inventory': the source's device list returned the asset. 'vulnerability_data': only
-- vulnerability rows named it (retention, device-group scoping); such assets do not count toward
-- the missing-device circuit breaker, and a delta run never marks them missing.
ALTER TABLE assets ADD COLUMN known_from TEXT NOT NULL DEFAULT 'inventory'
    CHECK (known_from IN ('inventory', 'vulnerability_data'));

-- Microsoft's own count of exposed devices per CVE (exposedMachines), beside Rampart's.
ALTER TABLE vulnerabilities ADD COLUMN source_exposed_machines BIGINT;
