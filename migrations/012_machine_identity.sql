-- 012_machine_identity: the SMBIOS UUID of a host, the second half of its
-- identity (docs/design/0003-security.md, "Machine identity that survives
-- cloning", issue 3/7).
--
-- Clones of a golden image share the image's machine GUID and differ in
-- their SMBIOS UUID (Win32_ComputerSystemProduct.UUID); a reimaged machine
-- keeps its SMBIOS UUID under a new machine GUID. The collector records the
-- SMBIOS UUID an agent enrols with and decides by proto/identity.Match
-- whether an enrollment of a machine GUID that an enabled agent holds is
-- that machine again or a clone.
ALTER TABLE host
    -- Win32_ComputerSystemProduct.UUID in the canonical form of
    -- proto/identity.ParseSMBIOSUUID (lower case, no braces); '' when
    -- unknown: enrolled before issue 3/7, or a placeholder the agent does
    -- not send. Set at enrollment; an enrollment that knows it fills it in
    -- for a host that did not.
    ADD COLUMN smbios_uuid text NOT NULL DEFAULT '';

-- The hosts of one SMBIOS UUID: a reimage of the same hardware finds its
-- host by it.
CREATE INDEX host_smbios_uuid ON host (smbios_uuid) WHERE smbios_uuid <> '';

-- VDI pools (secret create --vdi-pool): an enrollment with a pool secret of
-- a machine whose enabled agents were all enrolled with pool secrets
-- supersedes them without an admin's allow-reenroll; non-persistent
-- desktops enroll again at every boot.
ALTER TABLE enrollment_secret
    ADD COLUMN vdi_pool boolean NOT NULL DEFAULT false;
