#Requires -Version 5.1
<#
.SYNOPSIS
    The sessionaudit agent's test plan for a real Windows host (docs/testing-windows.md).

.DESCRIPTION
    Checks, on the host it runs on, the points of issue 3/7 ("Real fleets") and
    the checks no Linux machine or Wine can do: decoding against real WMI, a
    planted state directory, SMB sessions, boot time jitter, the enrollment
    secret's GPO, installation by GPO, time zones, a stopped Server service,
    a 24-hour memory run. Each point prints one line:

        [PASS]   the check passed
        [FAIL]   the check failed: the line says what was expected and seen
        [MANUAL] a person must do or judge something: the line says what

    A point whose feature is not built yet says "(not yet implemented:
    expected once implemented)" and says what to look for.

    Safe by default: with no -Point the script runs only the points that
    read (the host, WMI, the agent's log and settings, the registry, the
    collector's HTTP API). The points that change something (a scratch
    directory, a policy value, a service, the time zone, the clock) run only
    when named with -Point, and each change asks first (answer Y, or pass
    -Confirm:$false; -WhatIf shows what would change). The 24-hour memory run
    runs only when named.

    Run it elevated (the agent's state directory and log are readable by
    Administrators only), in Windows PowerShell 5.1 or PowerShell 7.

    Points (docs/testing-windows.md has each with its expected output):
      read-only (default): agent, wmi-decode, sids, wmi-timeout, linger,
        vdi-clone, state-dir-live, big-snapshot, smb-dup, boot-jitter,
        gpo-secret, clock, gpo-install
      change something (named only, each change asks): state-dir,
        class-toggle, wmi-hang, lanmanserver, time-zone, clock-fast
      long (named only): memory-24h
      -Point all runs every one of them.

.PARAMETER Point
    The points to run, by name; default: every read-only point.

.PARAMETER ApiUrl
    The collector's HTTP API, e.g. https://collector.contoso.com:8444. With
    -ApiToken (or $env:SESSIONAUDIT_API_TOKEN) the script compares what WMI
    shows with what the agent reported. The collector's certificate must be
    trusted by this machine (import agent-ca.crt into Trusted Root
    Certification Authorities of a test machine, or run the comparison from
    an analyst's machine).

.EXAMPLE
    .\test-plan.ps1
    Every read-only point; results in %TEMP%\sessionaudit-test-plan-<time>.

.EXAMPLE
    .\test-plan.ps1 -Point wmi-decode,sids -ApiUrl https://collector.contoso.com:8444
    Compare WMI with the collector ($env:SESSIONAUDIT_API_TOKEN holds a reader token).

.EXAMPLE
    .\test-plan.ps1 -Point state-dir
    The planted-state-directory cases, in a scratch directory (asks first).

.EXAMPLE
    .\test-plan.ps1 -Point memory-24h -MemoryHours 24
    Samples the agent's and WmiPrvSE's private bytes every 5 minutes for 24 hours.
#>
[CmdletBinding(SupportsShouldProcess = $true, ConfirmImpact = 'High')]
param(
    [string[]] $Point = @(),
    [string] $AgentExe = (Join-Path $env:ProgramFiles 'sessionaudit\sessionaudit-agent.exe'),
    [string] $StateDir = (Join-Path $env:ProgramData 'sessionaudit'),
    [string] $OutDir = (Join-Path $env:TEMP ('sessionaudit-test-plan-' + (Get-Date -Format 'yyyyMMdd-HHmmss'))),
    [string] $ScratchDir = (Join-Path $env:SystemDrive 'sessionaudit-test-plan'),
    [string] $ApiUrl = '',
    [string] $ApiToken = '',
    [int] $WaitSeconds = 150,
    [int] $BootSamples = 6,
    [int] $BootSampleSeconds = 20,
    [double] $MemoryHours = 24,
    [double] $MemoryIntervalMinutes = 5,
    [double] $AgentMaxPrivateMB = 64,
    [double] $AgentMaxGrowthMB = 10,
    [double] $WmiMaxGrowthMB = 25,
    [string] $Domain = $env:USERDNSDOMAIN
)

Set-StrictMode -Version 1.0
$ErrorActionPreference = 'Stop'
$script:Cmdlet = $PSCmdlet
$script:Results = New-Object System.Collections.Generic.List[object]
if (-not $ApiToken) { $ApiToken = $env:SESSIONAUDIT_API_TOKEN }
$script:Api = @{ Url = $ApiUrl.TrimEnd('/'); Token = $ApiToken }
$NotYet = '(not yet implemented: expected once implemented) '
$InProgress = '(being implemented: expected once implemented) '
$PolicyKey = 'HKLM:\SOFTWARE\Policies\sessionaudit\Agent'
$InstallerKey = 'HKLM:\SOFTWARE\sessionaudit\Agent'
$ServiceName = 'sessionaudit-agent'
$TrustedSids = @('S-1-5-18', 'S-1-5-32-544')

# ---------------------------------------------------------------- helpers

function Write-Result {
    param([string] $Id, [ValidateSet('PASS', 'FAIL', 'MANUAL')] [string] $Status, [string] $Text)
    $color = @{ PASS = 'Green'; FAIL = 'Red'; MANUAL = 'Yellow' }[$Status]
    Write-Host ('[{0}] {1,-15} {2}' -f $Status, $Id, $Text) -ForegroundColor $color
    $script:Results.Add([pscustomobject]@{ Point = $Id; Status = $Status; Text = $Text; Time = (Get-Date).ToUniversalTime().ToString('o') })
}

function Write-Step { param([string] $Text) Write-Host "    $Text" -ForegroundColor DarkGray }

function Test-IsAdmin {
    $id = [Security.Principal.WindowsIdentity]::GetCurrent()
    return (New-Object Security.Principal.WindowsPrincipal $id).IsInRole([Security.Principal.WindowsBuiltInRole]::Administrator)
}

# Confirm asks before a change (ShouldProcess: -WhatIf, -Confirm:$false).
function Confirm-Change { param([string] $Target, [string] $Action) return $script:Cmdlet.ShouldProcess($Target, $Action) }

function Save-Csv { param($Rows, [string] $Name) $path = Join-Path $OutDir $Name; @($Rows) | Export-Csv -NoTypeInformation -Encoding UTF8 -Path $path; return $path }

function ConvertTo-Utc {
    param($Value)
    if ($null -eq $Value -or "$Value" -eq '') { return $null }
    if ($Value -is [datetime]) { return $Value.ToUniversalTime() }
    return [datetime]::Parse([string]$Value, [Globalization.CultureInfo]::InvariantCulture,
        [Globalization.DateTimeStyles]::AdjustToUniversal -bor [Globalization.DateTimeStyles]::AssumeUniversal)
}

function Get-MachineGuid { return ((Get-ItemProperty 'HKLM:\SOFTWARE\Microsoft\Cryptography').MachineGuid).ToLowerInvariant() }

function Get-AgentService { return Get-CimInstance Win32_Service -Filter "Name='$ServiceName'" -ErrorAction SilentlyContinue }

# The flags the service runs with (after "run -service"), for "settings".
function Get-AgentFlags {
    $svc = Get-AgentService
    if ($null -eq $svc) { return @() }
    $tokens = [regex]::Matches($svc.PathName, '"[^"]*"|\S+') | ForEach-Object { $_.Value.Trim('"') }
    $i = [array]::IndexOf([string[]]@($tokens), 'run')
    if ($i -lt 0) { return @() }
    return @($tokens | Select-Object -Skip ($i + 1) | Where-Object { $_ -notin @('-service', '--service') })
}

# Invoke-Native runs a native command: its standard error must not stop the
# script (Windows PowerShell 5.1 turns redirected standard error into errors).
function Invoke-Native { param([scriptblock] $Block) $ErrorActionPreference = 'Continue'; & $Block }

function Invoke-Agent {
    param([string[]] $Arguments)
    $ErrorActionPreference = 'Continue'
    $out = & $AgentExe @Arguments 2>&1 | ForEach-Object { "$_" }
    return [pscustomobject]@{ Code = $LASTEXITCODE; Lines = @($out); Text = ($out -join "`n") }
}

function Get-AgentSettings {
    $r = Invoke-Agent (@('settings') + (Get-AgentFlags))
    $map = @{}
    foreach ($l in $r.Lines) {
        if ($l -match '^(\w+)=(.*) \(from (.*)\)$') { $map[$Matches[1]] = [pscustomobject]@{ Value = $Matches[2]; From = $Matches[3] } }
    }
    return [pscustomobject]@{ Map = $map; Lines = $r.Lines; Warnings = @($r.Lines | Where-Object { $_ -like 'warning:*' }) }
}

function Get-PollSeconds {
    $s = Get-AgentSettings
    if ($s.Map.ContainsKey('PollIntervalSeconds')) { return [int]$s.Map['PollIntervalSeconds'].Value }
    return 60
}

# Lines of agent.log (and agent.log.1) at or after $Since (UTC), optionally matching $Pattern.
function Get-AgentLog {
    param([datetime] $Since = [datetime]::MinValue, [string] $Pattern = '')
    $lines = @()
    foreach ($f in @("$StateDir\agent.log.1", "$StateDir\agent.log")) {
        if (Test-Path -LiteralPath $f) { $lines += @(Get-Content -LiteralPath $f -ErrorAction SilentlyContinue) }
    }
    $sinceUtc = $Since.ToUniversalTime()
    foreach ($l in $lines) {
        if ($l -notmatch '^time=(\S+)') { continue }
        $t = ConvertTo-Utc $Matches[1]
        if ($t -lt $sinceUtc) { continue }
        if ($Pattern -and $l -notmatch $Pattern) { continue }
        $l
    }
}

function Test-Api { return [bool]($script:Api.Url -and $script:Api.Token) }

function Invoke-Api {
    param([string] $PathAndQuery)
    [Net.ServicePointManager]::SecurityProtocol = [Net.ServicePointManager]::SecurityProtocol -bor [Net.SecurityProtocolType]::Tls12
    return Invoke-RestMethod -Method Get -Uri ($script:Api.Url + $PathAndQuery) -Headers @{ Authorization = 'Bearer ' + $script:Api.Token }
}

# Who the collector has on this host now: every page of /api/v1/who.
function Get-CollectorWho {
    param([string] $HostKey)
    $logon = @(); $server = @(); $token = ''
    $q = "/api/v1/who?host=$([uri]::EscapeDataString($HostKey))&at=now&page_size=1000"
    do {
        $page = Invoke-Api ($q + $(if ($token) { '&page_token=' + [uri]::EscapeDataString($token) } else { '' }))
        $logon += @($page.logon_sessions); $server += @($page.server_sessions)
        $token = [string]$page.next_page_token
    } while ($token)
    return [pscustomobject]@{ Logon = @($logon | Where-Object { $_ }); Server = @($server | Where-Object { $_ }) }
}

function Get-CollectorHost {
    param([string] $Guid)
    $token = ''
    do {
        $page = Invoke-Api ('/api/v1/hosts?page_size=1000' + $(if ($token) { '&page_token=' + [uri]::EscapeDataString($token) } else { '' }))
        foreach ($h in @($page.hosts)) { if ($h -and $h.machine_guid -eq $Guid) { return $h } }
        $token = [string]$page.next_page_token
    } while ($token)
    return $null
}

# The logon sessions and their accounts as WMI gives them.
function Get-WmiLogonView {
    $sessions = @(Get-CimInstance Win32_LogonSession)
    $links = @(Get-CimInstance Win32_LoggedOnUser)
    $byId = @{}
    foreach ($l in $links) {
        $id = [string]$l.Dependent.LogonId
        if (-not $byId.ContainsKey($id)) { $byId[$id] = $l.Antecedent }
    }
    $ids = @{}
    $rows = foreach ($s in $sessions) {
        $ids[[string]$s.LogonId] = $true
        $acct = $byId[[string]$s.LogonId]
        [pscustomobject]@{
            LogonId = [string]$s.LogonId; LogonType = [int]$s.LogonType; AuthenticationPackage = [string]$s.AuthenticationPackage
            StartUtc = ConvertTo-Utc $s.StartTime
            Account = $(if ($acct) { '{0}\{1}' -f $acct.Domain, $acct.Name } else { '' })
            Domain = $(if ($acct) { [string]$acct.Domain } else { '' }); Name = $(if ($acct) { [string]$acct.Name } else { '' })
        }
    }
    $stale = @($links | Where-Object { -not $ids.ContainsKey([string]$_.Dependent.LogonId) })
    return [pscustomobject]@{ Sessions = @($rows); Links = $links; StaleLinks = $stale }
}

function Get-PolicyValue { param([string] $Name) $p = Get-ItemProperty -Path $PolicyKey -Name $Name -ErrorAction SilentlyContinue; if ($p) { return $p.$Name }; return $null }

function Set-PolicyValue {
    param([string] $Name, $Value)
    if ($null -eq $Value) { Remove-ItemProperty -Path $PolicyKey -Name $Name -ErrorAction SilentlyContinue; return }
    if (-not (Test-Path $PolicyKey)) { New-Item -Path $PolicyKey -Force | Out-Null }
    New-ItemProperty -Path $PolicyKey -Name $Name -Value ([int]$Value) -PropertyType DWord -Force | Out-Null
}

function Get-AgentPid { $s = Get-AgentService; if ($s) { return [int]$s.ProcessId }; return 0 }

# ConvertTo-Sid turns an account name or a SID string into a SID string.
function ConvertTo-Sid {
    param([string] $Name)
    if ($Name -match '^S-1-') { return $Name }
    try { return (New-Object Security.Principal.NTAccount $Name).Translate([Security.Principal.SecurityIdentifier]).Value } catch { return $Name }
}

# Test-OnlyTrustedAcl: the owner's SID, whether the DACL is protected, and
# the SIDs other than SYSTEM and Administrators that an allow entry names.
function Test-OnlyTrustedAcl {
    param([string] $Path)
    $acl = Get-Acl -LiteralPath $Path
    $others = @($acl.Access | Where-Object { $_.AccessControlType -eq 'Allow' } | ForEach-Object {
            $sid = ConvertTo-Sid ([string]$_.IdentityReference)
            if ($TrustedSids -notcontains $sid) { $sid } })
    return [pscustomobject]@{ Owner = (ConvertTo-Sid $acl.Owner); Protected = $acl.AreAccessRulesProtected; Others = $others }
}

# ------------------------------------------------------------------ points

$Points = [ordered]@{}
function Add-Point {
    param([string] $Id, [string] $Title, [ValidateSet('read', 'change', 'long')] [string] $Kind, [scriptblock] $Run)
    $Points[$Id] = [pscustomobject]@{ Id = $Id; Title = $Title; Kind = $Kind; Run = $Run }
}

Add-Point 'agent' 'the agent is installed, running, configured' 'read' {
    $svc = Get-AgentService
    if ($null -eq $svc) { Write-Result 'agent' FAIL "no service ${ServiceName}: install the MSI (docs/deploy-windows.md)"; return }
    if (-not (Test-Path -LiteralPath $AgentExe)) { Write-Result 'agent' FAIL "no $AgentExe (pass -AgentExe)"; return }
    $ver = (Invoke-Agent @('version')).Text
    $s = Get-AgentSettings
    Write-Step "version: $ver"
    Write-Step "service: $($svc.State), start $($svc.StartMode), account $($svc.StartName), pid $($svc.ProcessId)"
    $s.Lines | ForEach-Object { Write-Step $_ }
    $problems = @()
    if ($svc.State -ne 'Running') { $problems += "service $($svc.State), want Running" }
    if ($svc.StartMode -ne 'Auto') { $problems += "start mode $($svc.StartMode), want Auto" }
    if ($svc.StartName -ne 'LocalSystem') { $problems += "account $($svc.StartName), want LocalSystem" }
    if (-not $s.Map.ContainsKey('CollectorAddress') -or -not $s.Map['CollectorAddress'].Value) { $problems += 'no CollectorAddress' }
    if ($s.Warnings.Count) { $problems += "settings warnings: $($s.Warnings -join '; ')" }
    if (-not (Get-AgentLog -Pattern 'msg="agent starting"')) { $problems += "no 'agent starting' in $StateDir\agent.log" }
    if ($problems) { Write-Result 'agent' FAIL ($problems -join '; ') } else { Write-Result 'agent' PASS "$ver; running; collector $($s.Map['CollectorAddress'].Value)" }
}

Add-Point 'wmi-decode' 'what the agent reports matches real WMI' 'read' {
    $poll = Get-PollSeconds
    $t0 = (Get-Date).ToUniversalTime()
    $v = Get-WmiLogonView
    $ss = @(Get-CimInstance Win32_ServerSession)
    $logonCsv = Save-Csv $v.Sessions 'wmi-logon-sessions.csv'
    Save-Csv ($ss | Select-Object ComputerName, UserName, ClientType, ActiveTime, IdleTime, ResourcesOpened, SessionType, TransportName) 'wmi-server-sessions.csv' | Out-Null
    Write-Step "WMI: $($v.Sessions.Count) logon sessions, $($v.Links.Count) Win32_LoggedOnUser links ($($v.StaleLinks.Count) to sessions WMI does not list), $($ss.Count) server sessions; files in $OutDir"
    if (-not (Test-Api)) {
        Write-Result 'wmi-decode' MANUAL ("no -ApiUrl/-ApiToken: compare $logonCsv with 'sessionaudit who --host $(Get-MachineGuid) --at now --csv' " +
            "(and --kind server with wmi-server-sessions.csv): every LogonId, its logon type, authentication package, start (UTC, to the second) and account must match; the agent has no command that prints its own snapshot")
        return
    }
    $who = Get-CollectorWho (Get-MachineGuid)
    $settle = $t0.AddSeconds(-(2 * $poll + 30)) # newer sessions may not be delivered yet
    $rows = @{}; foreach ($r in $who.Logon) { $rows[[string]$r.logon_id] = $r }
    $bad = @()
    foreach ($s in $v.Sessions) {
        if ($s.StartUtc -and $s.StartUtc -gt $settle) { continue }
        $r = $rows[$s.LogonId]
        if ($null -eq $r) { $bad += "LogonId $($s.LogonId) ($($s.Account), type $($s.LogonType)) not open at the collector"; continue }
        if ([int]$r.logon_type_raw -ne $s.LogonType) { $bad += "LogonId $($s.LogonId): type $($r.logon_type_raw), WMI $($s.LogonType)" }
        if ([string]$r.authentication_package -ne $s.AuthenticationPackage) { $bad += "LogonId $($s.LogonId): package '$($r.authentication_package)', WMI '$($s.AuthenticationPackage)'" }
        $rs = ConvertTo-Utc $r.start
        if ($s.StartUtc -and (-not $rs -or [math]::Abs(($rs - $s.StartUtc).TotalSeconds) -gt 1)) { $bad += "LogonId $($s.LogonId): start $($r.start), WMI $($s.StartUtc.ToString('o'))" }
        if ($s.Account -and [string]$r.account -ne $s.Account) { $bad += "LogonId $($s.LogonId): account '$($r.account)', WMI '$($s.Account)'" }
    }
    $wmiKeys = @{}; foreach ($x in $ss) { $wmiKeys[('{0}|{1}' -f $x.ComputerName, $x.UserName).ToLowerInvariant()] = $x }
    $colKeys = @{}; foreach ($r in $who.Server) { $colKeys[('{0}|{1}' -f $r.from_computer, $r.user_name).ToLowerInvariant()] = $r }
    foreach ($k in $wmiKeys.Keys) {
        $x = $wmiKeys[$k]
        if ([int]$x.ActiveTime -lt (2 * $poll + 30)) { continue }
        if (-not $colKeys.ContainsKey($k)) { $bad += "SMB session $k not open at the collector"; continue }
        $want = $t0.AddSeconds(-[int]$x.ActiveTime); $got = ConvertTo-Utc $colKeys[$k].start
        if ([math]::Abs(($got - $want).TotalSeconds) -gt (15 + $poll)) { $bad += "SMB session ${k}: start $($colKeys[$k].start), WMI now-ActiveTime $($want.ToString('o'))" }
    }
    $extra = @($who.Logon | Where-Object { -not ($v.Sessions.LogonId -contains [string]$_.logon_id) } | ForEach-Object { $_.logon_id })
    if ($extra) { Write-Step "open at the collector, not in WMI now (ended within a poll, or lingering: see linger): $($extra -join ', ')" }
    Save-Csv $who.Logon 'collector-logon-sessions.csv' | Out-Null
    if ($bad) { ($bad | Out-String) | Set-Content (Join-Path $OutDir 'wmi-decode-differences.txt'); Write-Result 'wmi-decode' FAIL "$($bad.Count) differences, first: $($bad[0]) (all in wmi-decode-differences.txt)" }
    else { Write-Result 'wmi-decode' PASS "$($v.Sessions.Count) logon and $($ss.Count) SMB sessions of WMI match the collector's open sessions" }
}

Add-Point 'sids' 'every account is reported with its SID' 'read' {
    $v = Get-WmiLogonView
    $want = @{}
    foreach ($s in $v.Sessions) {
        if (-not $s.Account) { continue }
        try { $want[$s.LogonId] = (New-Object Security.Principal.NTAccount $s.Domain, $s.Name).Translate([Security.Principal.SecurityIdentifier]).Value } catch { $want[$s.LogonId] = '' }
    }
    Save-Csv ($want.GetEnumerator() | ForEach-Object { [pscustomobject]@{ LogonId = $_.Key; Sid = $_.Value } }) 'local-sids.csv' | Out-Null
    if (-not (Test-Api)) { Write-Result 'sids' MANUAL ($InProgress + "compare local-sids.csv with the 'sid' of 'sessionaudit who --host $(Get-MachineGuid) --at now --csv': the same SID per LogonId; an account LookupAccountName cannot resolve has none"); return }
    $who = Get-CollectorWho (Get-MachineGuid)
    $bad = @(); $missing = 0
    foreach ($r in $who.Logon) {
        $w = $want[[string]$r.logon_id]
        if (-not $w) { continue }
        $got = [string]$r.sid
        if (-not $got) { $missing++; continue }
        if ($got -ne $w) { $bad += "LogonId $($r.logon_id) $($r.account): $got, locally $w" }
    }
    if ($bad) { Write-Result 'sids' FAIL ($InProgress + "$($bad.Count) SIDs differ, first: $($bad[0])") }
    elseif ($missing) { Write-Result 'sids' FAIL ($InProgress + "$missing open sessions without a SID at the collector although Windows resolves them (a lookup still running is reported later: run again after a few polls)") }
    else { Write-Result 'sids' PASS 'every open session with an account has the SID Windows gives it' }
}

Add-Point 'wmi-timeout' 'QueryTimeoutSeconds fits the host; no query passed its deadline' 'read' {
    $s = Get-AgentSettings
    if (-not $s.Map.ContainsKey('QueryTimeoutSeconds')) { Write-Result 'wmi-timeout' MANUAL ($InProgress + 'this agent has no QueryTimeoutSeconds setting: install a build that has it'); return }
    $timeout = [int]$s.Map['QueryTimeoutSeconds'].Value
    $times = foreach ($c in @('Win32_OperatingSystem', 'Win32_ComputerSystem', 'Win32_ServerSession', 'Win32_LogonSession', 'Win32_LoggedOnUser')) {
        $ms = (Measure-Command { Get-CimInstance $c | Out-Null }).TotalMilliseconds
        [pscustomobject]@{ Class = $c; Seconds = [math]::Round($ms / 1000, 2) }
    }
    $times | ForEach-Object { Write-Step ('{0,-22} {1,7} s' -f $_.Class, $_.Seconds) }
    $late = @(Get-AgentLog -Since (Get-Date).AddDays(-1) -Pattern 'WMI query past its deadline|WMI watchdog')
    $late | Select-Object -Last 5 | ForEach-Object { Write-Step $_ }
    $slow = @($times | Where-Object { $_.Seconds -gt $timeout / 2 })
    if ($slow) { Write-Result 'wmi-timeout' FAIL ($InProgress + "queries take more than half of QueryTimeoutSeconds=${timeout}: $(($slow | ForEach-Object { "$($_.Class) $($_.Seconds) s" }) -join ', '); raise the setting for this host") }
    elseif ($late) { Write-Result 'wmi-timeout' MANUAL ($InProgress + "$($late.Count) deadline or watchdog lines in the last day (above): is WMI on this host healthy? winmgmt /verifyrepository") }
    else { Write-Result 'wmi-timeout' PASS "every class answers in under half of QueryTimeoutSeconds=$timeout; no deadline passed in the last day" }
}

Add-Point 'wmi-hang' 'a hung WMI query: TIMEOUT, then the watchdog restarts the agent' 'change' {
    $ps = Get-Command pssuspend.exe, pssuspend64.exe -ErrorAction SilentlyContinue | Select-Object -First 1
    $hosts = @(Invoke-Native { tasklist /m cimwin32.dll /fo csv /nh 2>$null } | ConvertFrom-Csv -Header Image, PID, Modules | Where-Object { $_.Image -eq 'WmiPrvSE.exe' })
    if (-not $ps -or -not $hosts) {
        Write-Result 'wmi-hang' MANUAL ($InProgress + 'needs Sysinternals pssuspend in PATH and a WmiPrvSE.exe hosting cimwin32.dll (tasklist /m cimwin32.dll); then: set QueryTimeoutSeconds=5, pssuspend that WmiPrvSE, expect a TIMEOUT line within a poll, the watchdog error (event ID 1, source sessionaudit-agent) after 3 deadlines, a new agent PID; pssuspend -r it')
        return
    }
    $wmiPid = [int]$hosts[0].PID
    if (-not (Confirm-Change "WmiPrvSE.exe pid $wmiPid and policy QueryTimeoutSeconds" 'set QueryTimeoutSeconds=5, suspend the WMI provider host until the agent restarts, then resume it and restore the policy')) { Write-Result 'wmi-hang' MANUAL 'skipped: not confirmed'; return }
    $old = Get-PolicyValue 'QueryTimeoutSeconds'; $pid0 = Get-AgentPid; $since = Get-Date
    try {
        Set-PolicyValue 'QueryTimeoutSeconds' 5
        Write-Step 'waiting for the agent to reload its policies (70 s)'; Start-Sleep -Seconds 70
        Invoke-Native { & $ps.Source -accepteula $wmiPid 2>&1 } | Out-Null
        $deadline = (Get-Date).AddSeconds(5 * 3 + 2 * (Get-PollSeconds) + 60)
        do { Start-Sleep -Seconds 5; $pid1 = Get-AgentPid } while ((Get-Date) -lt $deadline -and ($pid1 -eq $pid0 -or $pid1 -eq 0))
    } finally {
        Invoke-Native { & $ps.Source -accepteula -r $wmiPid 2>&1 } | Out-Null
        Set-PolicyValue 'QueryTimeoutSeconds' $old
    }
    $timeoutLine = @(Get-AgentLog -Since $since -Pattern 'WMI query past its deadline')
    $event = @(Get-WinEvent -FilterHashtable @{ LogName = 'Application'; ProviderName = $ServiceName; Id = 1; StartTime = $since } -ErrorAction SilentlyContinue | Where-Object { $_.Message -match 'WMI watchdog' })
    $pid1 = Get-AgentPid
    if ($timeoutLine -and $event -and $pid1 -ne $pid0 -and $pid1 -ne 0) { Write-Result 'wmi-hang' PASS "TIMEOUT logged, watchdog error in the event log, agent restarted (pid $pid0 -> $pid1)" }
    else { Write-Result 'wmi-hang' FAIL ($InProgress + "TIMEOUT line: $([bool]$timeoutLine), watchdog event: $([bool]$event), pid $pid0 -> $pid1") }
}

Add-Point 'linger' 'no logon session that ended is reported open' 'read' {
    $v = Get-WmiLogonView
    $withProcess = @{}
    foreach ($sp in @(Get-CimInstance Win32_SessionProcess -ErrorAction SilentlyContinue)) { $withProcess[[string]$sp.Antecedent.LogonId] = $true }
    $old = (Get-Date).ToUniversalTime().AddHours(-1)
    $cand = @($v.Sessions | Where-Object { $_.LogonType -in 2, 10, 11, 12 -and -not $withProcess[$_.LogonId] -and $_.StartUtc -and $_.StartUtc -lt $old })
    Save-Csv $cand 'linger-candidates.csv' | Out-Null
    Write-Step "interactive logon sessions with no process, started over an hour ago: $($cand.Count) (linger-candidates.csv); quser lists who is really logged on:"
    Invoke-Native { quser 2>&1 } | ForEach-Object { Write-Step "$_" }
    if (-not $cand) { Write-Result 'linger' PASS 'no interactive logon session without processes: nothing lingers here now'; return }
    $open = ''
    if (Test-Api) { $who = Get-CollectorWho (Get-MachineGuid); $open = " ($(@($who.Logon | Where-Object { $cand.LogonId -contains [string]$_.logon_id }).Count) of them open at the collector)" }
    Write-Result 'linger' MANUAL ($NotYet + "$($cand.Count) interactive sessions without processes$open, e.g. $($cand[0].Account) since $($cand[0].StartUtc.ToString('o')): if quser does not list that user, WMI keeps a session that ended; today the agent reports it open, once implemented it should not")
}

Add-Point 'vdi-clone' 'this host is one host at the collector, with its own identity' 'read' {
    $guid = Get-MachineGuid
    $crt = Join-Path $StateDir 'agent.crt'
    $problems = @()
    if (Test-Path -LiteralPath $crt) {
        $pem = Get-Content -Raw -LiteralPath $crt
        $b64 = [regex]::Match($pem, '-----BEGIN CERTIFICATE-----(.*?)-----END CERTIFICATE-----', 'Singleline').Groups[1].Value -replace '\s', ''
        $cert = New-Object Security.Cryptography.X509Certificates.X509Certificate2 (, [Convert]::FromBase64String($b64))
        $san = ($cert.Extensions | Where-Object { $_.Oid.Value -eq '2.5.29.17' } | ForEach-Object { $_.Format($false) }) -join ' '
        if ($san -notmatch [regex]::Escape("sessionaudit://host/$guid")) { $problems += "agent.crt names another machine ($san) than MachineGuid ${guid}: a cloned disk; the agent moves it aside at its next start" }
        Write-Step "agent.crt: $san, valid to $($cert.NotAfter.ToString('u'))"
    } else { Write-Step 'no agent.crt: not enrolled yet' }
    @(Get-AgentLog -Pattern 'belongs to another machine') | Select-Object -Last 3 | ForEach-Object { Write-Step $_ }
    if (Test-Api) {
        $h = Get-CollectorHost $guid
        if ($null -eq $h) { $problems += "the collector has no host with machine GUID $guid" }
        elseif ([string]$h.host -ne $env:COMPUTERNAME) { $problems += "the collector's host $guid is named '$($h.host)', this host '$env:COMPUTERNAME': another machine (a clone) reports this GUID" }
    }
    if ($problems) { Write-Result 'vdi-clone' FAIL ($NotYet + ($problems -join '; ')); return }
    Write-Result 'vdi-clone' MANUAL ($NotYet + "identity matches MachineGuid $guid. Clone test: make two VMs from one image with the agent installed (and one non-persistent VDI pool); expected once implemented: each clone is its own host at the collector; today clones that share MachineGuid are one host (the second enrollment is refused and alerted) - sysprep the image")
}

Add-Point 'state-dir-live' "the agent's state directory is the agent's" 'read' {
    $r = Invoke-Agent @('check-state-dir', '-n', '-state-dir', $StateDir)
    $r.Lines | ForEach-Object { Write-Step $_ }
    $problems = @()
    if ($r.Text -match 'unknown command') { Write-Result 'state-dir-live' MANUAL 'this agent has no check-state-dir command: install a build that has it'; return }
    if ($r.Code -ne 0 -or $r.Text -notmatch 'decision: use:') { $problems += 'check-state-dir -n does not decide "use"' }
    $a = Test-OnlyTrustedAcl $StateDir
    if ($a.Owner -ne 'S-1-5-32-544' -or -not $a.Protected -or $a.Others) { $problems += "ACL: owner $($a.Owner), protected $($a.Protected), others $($a.Others -join ',')" }
    $conf = Join-Path $StateDir 'agent.conf'
    if (Test-Path -LiteralPath $conf) {
        $c = Test-OnlyTrustedAcl $conf
        if ($TrustedSids -notcontains $c.Owner) { $problems += "agent.conf owned by $($c.Owner): the agent ignores it" }
    }
    $aside = @(Get-ChildItem -LiteralPath (Split-Path $StateDir) -Filter ((Split-Path $StateDir -Leaf) + '.untrusted-*') -Force -ErrorAction SilentlyContinue)
    if ($problems) { Write-Result 'state-dir-live' FAIL ($problems -join '; ') }
    elseif ($aside) { Write-Result 'state-dir-live' MANUAL "the state directory is the agent's, but $($aside.Count) directories were moved aside ($($aside[0].FullName)): look at who owns what in them" }
    else { Write-Result 'state-dir-live' PASS 'owned by Administrators, protected DACL for SYSTEM and Administrators only, every entry trusted' }
}

Add-Point 'state-dir' 'a planted state directory is moved aside, a junction never followed' 'change' {
    if ((Invoke-Agent @('check-state-dir', '-n', '-state-dir', (Join-Path $env:TEMP 'x'))).Text -match 'unknown command') { Write-Result 'state-dir' MANUAL 'this agent has no check-state-dir command: install a build that has it'; return }
    if (-not (Confirm-Change $ScratchDir 'create test directories, owners and junctions under it and run sessionaudit-agent check-state-dir on them (nothing else is touched; the directory is left for inspection)')) { Write-Result 'state-dir' MANUAL 'skipped: not confirmed'; return }
    New-Item -ItemType Directory -Force -Path $ScratchDir | Out-Null
    $run = Join-Path $ScratchDir (Get-Date -Format 'yyyyMMdd-HHmmss')
    New-Item -ItemType Directory -Path $run | Out-Null
    $users = '*S-1-5-32-545'
    $fails = @()
    $case = {
        param([string] $Name, [string] $Dir, [string] $WantDecision, [int] $WantCode)
        $r = Invoke-Agent @('check-state-dir', '-state-dir', $Dir)
        $r.Lines | Set-Content (Join-Path $run "$Name.txt")
        $first = ($r.Lines | Where-Object { $_ -match '^\s+decision:' } | Select-Object -First 1)
        $ok = ($first -match "decision: ${WantDecision}:") -and ($r.Code -eq $WantCode)
        Write-Step ('{0,-28} {1}  (exit {2})' -f $Name, "$first".Trim(), $r.Code)
        if (-not $ok) { $script:stateDirFails += "${Name}: want $WantDecision, exit $WantCode; got '$first', exit $($r.Code) ($Name.txt)" }
        return $r
    }
    $script:stateDirFails = @()
    # A: nothing there: created with the agent's descriptor.
    $a = Join-Path $run 'A\sessionaudit'; New-Item -ItemType Directory -Path (Split-Path $a) | Out-Null
    & $case 'A-absent' $a 'create' 0 | Out-Null
    $acl = Test-OnlyTrustedAcl $a
    if ($acl.Owner -ne 'S-1-5-32-544' -or -not $acl.Protected -or $acl.Others) { $script:stateDirFails += "A: ACL owner $($acl.Owner), protected $($acl.Protected), others $($acl.Others -join ',')" }
    # B: a directory owned by Users (as a local user would make it).
    $b = Join-Path $run 'B\sessionaudit'; New-Item -ItemType Directory -Path $b | Out-Null
    Set-Content -LiteralPath (Join-Path $b 'agent.conf') 'CollectorAddress = attacker.invalid:443'
    icacls $b /setowner $users | Out-Null
    & $case 'B-owned-by-Users' $b 'move-aside' 0 | Out-Null
    if (-not (Get-ChildItem -LiteralPath (Split-Path $b) -Filter 'sessionaudit.untrusted-*')) { $script:stateDirFails += 'B: nothing moved aside' }
    # C: a junction an administrator made: refused; D: one Users own: moved aside, target untouched.
    foreach ($x in @(@{ Name = 'C-admin-junction'; Owner = ''; Want = 'refuse'; Code = 1 }, @{ Name = 'D-users-junction'; Owner = $users; Want = 'move-aside'; Code = 0 })) {
        $base = Join-Path $run $x.Name; $target = Join-Path $base 'target'; $j = Join-Path $base 'sessionaudit'
        New-Item -ItemType Directory -Path $target | Out-Null
        Set-Content -LiteralPath (Join-Path $target 'marker.txt') 'do not touch'
        New-Item -ItemType Junction -Path $j -Value $target | Out-Null
        if ($x.Owner) { icacls $j /setowner $x.Owner /L | Out-Null }
        & $case $x.Name $j $x.Want $x.Code | Out-Null
        if (@(Get-ChildItem -LiteralPath $target -Force).Count -ne 1 -or -not (Test-Path -LiteralPath (Join-Path $target 'marker.txt'))) { $script:stateDirFails += "$($x.Name): the junction's target changed" }
        if ($x.Owner) {
            $moved = @(Get-ChildItem -LiteralPath $base -Filter 'sessionaudit.untrusted-*' -Force)
            if (-not $moved -or -not ($moved[0].Attributes -band [IO.FileAttributes]::ReparsePoint)) { $script:stateDirFails += "$($x.Name): the junction itself was not moved aside" }
        }
    }
    # E: an administrator's directory with the ACL inherited from its parent: restricted, contents kept.
    $e = Join-Path $run 'E\sessionaudit'; New-Item -ItemType Directory -Path $e | Out-Null
    Set-Content -LiteralPath (Join-Path $e 'agent.key') 'x'
    $re = & $case 'E-inherited-acl' $e 'restrict' 0
    if (-not (Test-Path -LiteralPath (Join-Path $e 'agent.key')) -or $re.Text -notmatch 'decision: use:') { $script:stateDirFails += 'E: not used after restricting, or agent.key lost' }
    # F: a spool segment Users own in a restricted directory; G: a hard link.
    foreach ($x in @('F-planted-segment', 'G-hard-link')) {
        $d = Join-Path $run "$x\sessionaudit"; New-Item -ItemType Directory -Path (Split-Path $d) | Out-Null
        Invoke-Agent @('check-state-dir', '-state-dir', $d) | Out-Null
        New-Item -ItemType Directory -Path (Join-Path $d 'spool') | Out-Null
        if ($x -like 'F-*') { Set-Content -LiteralPath (Join-Path $d 'spool\00000000000000000001.seg') 'x'; icacls (Join-Path $d 'spool\00000000000000000001.seg') /setowner $users | Out-Null }
        else { Set-Content -LiteralPath (Join-Path $run "$x\outside.txt") 'x'; New-Item -ItemType HardLink -Path (Join-Path $d 'spool\00000000000000000002.seg') -Value (Join-Path $run "$x\outside.txt") | Out-Null }
        & $case $x $d 'move-aside' 0 | Out-Null
    }
    # H: agent.conf owned by Users in a restricted directory: the directory is used, the file ignored.
    $h = Join-Path $run 'H\sessionaudit'; New-Item -ItemType Directory -Path (Split-Path $h) | Out-Null
    Invoke-Agent @('check-state-dir', '-state-dir', $h) | Out-Null
    $conf = Join-Path $h 'agent.conf'; Set-Content -LiteralPath $conf 'CollectorAddress = attacker.invalid:443'
    icacls $conf /setowner $users | Out-Null
    & $case 'H-users-agent.conf' $h 'use' 0 | Out-Null
    $st = Invoke-Agent @('settings', "-config=$conf")
    if ($st.Text -notmatch 'owned by S-1-5-32-545' -or $st.Text -match 'attacker\.invalid') { $script:stateDirFails += "H: settings -config did not ignore the Users-owned agent.conf" }
    # I: agent.conf Users may write: ignored.
    icacls $conf /setowner '*S-1-5-32-544' | Out-Null; icacls $conf /grant "${users}:(M)" | Out-Null
    $st = Invoke-Agent @('settings', "-config=$conf")
    if ($st.Text -notmatch 'S-1-5-32-545 may change it' -or $st.Text -match 'attacker\.invalid') { $script:stateDirFails += 'I: settings -config did not ignore an agent.conf that Users may change' }
    else { Write-Step 'H, I: settings -config ignores the file, saying why' }
    if ($script:stateDirFails) { Write-Result 'state-dir' FAIL (($script:stateDirFails -join '; ') + " (outputs in $run)") }
    else { Write-Result 'state-dir' PASS "absent, Users' directory, two junctions, inherited ACL, planted segment, hard link, Users' agent.conf: as docs/agent.md says (left in $run; remove with: cmd /c rmdir /s /q `"$ScratchDir`")" }
}

Add-Point 'big-snapshot' 'big snapshots (50,000 SMB sessions) reach the collector' 'read' {
    $n = @(Get-CimInstance Win32_ServerSession).Count
    $l = @(Get-CimInstance Win32_LogonSession).Count
    $refused = @(Get-AgentLog -Since (Get-Date).AddDays(-7) -Pattern 'REFUSED a batch|more than \d+ sessions|larger than')
    $refused | Select-Object -Last 3 | ForEach-Object { Write-Step $_ }
    if ($refused) { Write-Result 'big-snapshot' FAIL ($NotYet + "the collector refused batches in the last week (above): a report over its limits (today 20,000 sessions per report, 4 MiB per call)"); return }
    Write-Result 'big-snapshot' MANUAL ($NotYet + "this host: $l logon and $n SMB sessions, delivered. Load test: open 50,000 SMB sessions to a test file server (e.g. many clients or users running 'net use \\server\IPC$'), then expect within two polls: no 'REFUSED a batch' in agent.log, the host's server sessions at the collector = Get-SmbSession count, agent private bytes under $AgentMaxPrivateMB MB")
}

Add-Point 'smb-dup' 'Win32_ServerSession duplicates and MSFT_SmbSession' 'read' {
    $ws = @(Get-CimInstance Win32_ServerSession)
    $ms = @(Get-SmbSession -ErrorAction SilentlyContinue)
    Save-Csv ($ms | Select-Object SessionId, ClientComputerName, ClientUserName, NumOpens, SecondsExists, SecondsIdle, Dialect) 'msft-smb-sessions.csv' | Out-Null
    $dups = @($ws | Group-Object { '{0}|{1}' -f $_.ComputerName, $_.UserName } | Where-Object { $_.Count -gt 1 })
    Write-Step "Win32_ServerSession: $($ws.Count) rows, $($dups.Count) keys (ComputerName, UserName) seen more than once; MSFT_SmbSession (Get-SmbSession): $($ms.Count) sessions"
    if (-not $dups -and $ws.Count -eq $ms.Count) { Write-Result 'smb-dup' PASS 'no duplicate Win32_ServerSession keys, counts agree with MSFT_SmbSession'; return }
    Write-Result 'smb-dup' MANUAL ($NotYet + "duplicates: $(($dups | Select-Object -First 3 | ForEach-Object { "$($_.Name) x$($_.Count)" }) -join ', '); Win32_ServerSession $($ws.Count) vs MSFT_SmbSession $($ms.Count) (msft-smb-sessions.csv). Today the agent keeps one row per (ComputerName, UserName) and counts the others as dropped; once implemented each MSFT_SmbSession SessionId should be one session at the collector")
}

Add-Point 'boot-jitter' 'LastBootUpTime does not move while the host runs' 'read' {
    $seen = @()
    for ($i = 0; $i -lt $BootSamples; $i++) {
        $seen += (ConvertTo-Utc (Get-CimInstance Win32_OperatingSystem).LastBootUpTime).ToString('o')
        if ($i -lt $BootSamples - 1) { Start-Sleep -Seconds $BootSampleSeconds }
    }
    $distinct = @($seen | Sort-Object -Unique)
    $distinct | ForEach-Object { Write-Step "LastBootUpTime $_" }
    if ($distinct.Count -eq 1) { Write-Result 'boot-jitter' PASS "the same LastBootUpTime in $BootSamples samples over $(($BootSamples - 1) * $BootSampleSeconds) s"; return }
    $spread = ((ConvertTo-Utc $distinct[-1]) - (ConvertTo-Utc $distinct[0])).TotalSeconds
    if ($spread -le 5) { Write-Result 'boot-jitter' PASS "$($distinct.Count) values of LastBootUpTime, $spread s apart: within the 5 s the agent and the collector take for one boot (limits.BootJitter)"; return }
    Write-Result 'boot-jitter' FAIL "$($distinct.Count) values of LastBootUpTime, $spread s apart: more than the 5 s the agent and the collector take for one boot (limits.BootJitter): a move beyond it is taken as a reboot (a full snapshot, a new boot at the collector)"
}

Add-Point 'class-toggle' 'a class turned off and on again is collected again without a restart' 'change' {
    $old = Get-PolicyValue 'CollectServerSessions'
    if (-not (Confirm-Change "$PolicyKey\CollectServerSessions" "set to 0, wait $WaitSeconds s, set to 1, wait $WaitSeconds s, then restore the previous value")) { Write-Result 'class-toggle' MANUAL 'skipped: not confirmed'; return }
    $made = $false
    if (-not @(Get-CimInstance Win32_ServerSession).Count) { Invoke-Native { net use \\127.0.0.1\IPC$ 2>&1 } | Out-Null; $made = $true }
    $pid0 = Get-AgentPid; $since = Get-Date
    try {
        Set-PolicyValue 'CollectServerSessions' 0; Start-Sleep -Seconds $WaitSeconds
        $onAt = (Get-Date).ToUniversalTime()
        Set-PolicyValue 'CollectServerSessions' 1; Start-Sleep -Seconds $WaitSeconds
    } finally {
        Set-PolicyValue 'CollectServerSessions' $old
        if ($made) { Invoke-Native { net use \\127.0.0.1\IPC$ /delete /y 2>&1 } | Out-Null }
    }
    $off = @(Get-AgentLog -Since $since -Pattern 'settings changed.*CollectServerSessions=0')
    $on = @(Get-AgentLog -Since $since -Pattern 'settings changed.*CollectServerSessions=1')
    $problems = @()
    if (-not $off -or -not $on) { $problems += "settings changed lines: off $([bool]$off), on $([bool]$on)" }
    if ((Get-AgentPid) -ne $pid0) { $problems += 'the agent restarted' }
    if (Test-Api) {
        $who = Get-CollectorWho (Get-MachineGuid)
        $fresh = @($who.Server | Where-Object { (ConvertTo-Utc $_.last_seen) -gt $onAt })
        if (-not $fresh) { $problems += 'no SMB session of this host seen by the collector since the class was turned on again' }
    }
    if ($problems) { Write-Result 'class-toggle' FAIL ($InProgress + ($problems -join '; ')) }
    elseif (Test-Api) { Write-Result 'class-toggle' PASS 'turned off and on by policy, SMB sessions reported again, same agent process' }
    else { Write-Result 'class-toggle' MANUAL ($InProgress + "settings changed both ways without a restart; with -ApiUrl the script also checks that SMB sessions are reported again (else: 'sessionaudit who --host $(Get-MachineGuid) --at now --kind server --csv' shows last_seen after the switch)") }
}

Add-Point 'lanmanserver' 'a stopped Server service is a collection error, not "no SMB sessions"' 'change' {
    $svc = Get-Service LanmanServer
    if (-not (Confirm-Change 'service LanmanServer (Server)' "stop it for $WaitSeconds s (shares of this host are unreachable meanwhile), then start it and the services that depended on it")) { Write-Result 'lanmanserver' MANUAL 'skipped: not confirmed'; return }
    $before = @(Get-CimInstance Win32_ServerSession).Count
    $dependents = @($svc.DependentServices | Where-Object { $_.Status -eq 'Running' })
    $wmiErr = ''; $rows = -1; $since = Get-Date
    try {
        Stop-Service LanmanServer -Force
        try { $rows = @(Get-CimInstance Win32_ServerSession -ErrorAction Stop).Count } catch { $wmiErr = $_.Exception.Message }
        Start-Sleep -Seconds $WaitSeconds
        $who = $null; if (Test-Api) { $who = Get-CollectorWho (Get-MachineGuid) }
    } finally {
        Start-Service LanmanServer
        $dependents | ForEach-Object { Start-Service $_.Name -ErrorAction SilentlyContinue }
    }
    Write-Step "Win32_ServerSession with LanmanServer stopped: $(if ($wmiErr) { "error: $wmiErr" } else { "$rows rows, no error" }); $before rows before"
    $ended = $false
    if ($who -and $before -gt 0) { $ended = (@($who.Server).Count -eq 0) }
    if ($ended) { Write-Result 'lanmanserver' FAIL ($NotYet + "the collector ended this host's SMB sessions while the Server service was stopped: it took the stop for 'no sessions'") }
    elseif (-not $wmiErr -and $rows -eq 0) { Write-Result 'lanmanserver' FAIL ($NotYet + "WMI answers 0 rows and no error with the Server service stopped: the agent cannot tell it from 'no sessions' and reports none; once implemented it should report a collection error for Win32_ServerSession") }
    elseif ($who) { Write-Result 'lanmanserver' PASS "WMI fails ($wmiErr): a collection error; the collector kept the SMB sessions open" }
    else { Write-Result 'lanmanserver' MANUAL "WMI fails ($wmiErr), which the agent reports as QUERY_FAILED; check at the collector that this host's SMB sessions were not ended between $($since.ToUniversalTime().ToString('o')) and now" }
}

Add-Point 'gpo-secret' 'the enrollment secret is not readable by every domain user' 'read' {
    $problems = @(); $manual = @()
    $enrolled = Test-Path -LiteralPath (Join-Path $StateDir 'agent.crt')
    $inst = Get-ItemProperty -Path $InstallerKey -Name EnrollmentSecret -ErrorAction SilentlyContinue
    if ($inst -and $inst.EnrollmentSecret -and $enrolled) { $problems += "the MSI's installer setting $InstallerKey\EnrollmentSecret still holds a secret after enrollment (readable by local users): reg delete HKLM\SOFTWARE\sessionaudit\Agent /v EnrollmentSecret /f" }
    if ((Get-PolicyValue 'EnrollmentSecret') -and $enrolled) { $manual += 'the secret is still set by policy on this enrolled host: set it to Not configured once the wave has enrolled' }
    $conf = Join-Path $StateDir 'agent.conf'
    if ((Test-Path -LiteralPath $conf) -and (Select-String -LiteralPath $conf -Pattern '^\s*EnrollmentSecret\s*=' -Quiet)) {
        $c = Test-OnlyTrustedAcl $conf
        if ($c.Others) { $problems += "agent.conf holds the secret and grants $($c.Others -join ', ') access" }
    }
    if (Get-Module -ListAvailable GroupPolicy) {
        Import-Module GroupPolicy
        $wide = @('S-1-5-11', 'S-1-1-0', 'S-1-5-32-545')
        $gpos = @(Get-GPO -All -Domain $Domain | Where-Object { Get-GPRegistryValue -Guid $_.Id -Domain $Domain -Key 'HKLM\SOFTWARE\Policies\sessionaudit\Agent' -ValueName EnrollmentSecret -ErrorAction SilentlyContinue })
        foreach ($g in $gpos) {
            foreach ($p in @(Get-GPPermission -Guid $g.Id -All -Domain $Domain)) {
                $sid = $p.Trustee.Sid.Value
                if (($wide -contains $sid -or $sid -like 'S-1-5-21-*-513') -and $p.Permission -in 'GpoRead', 'GpoApply') { $problems += "GPO '$($g.DisplayName)' grants $($p.Trustee.Name) $($p.Permission)" }
            }
            $path = "\\$Domain\SYSVOL\$Domain\Policies\{$($g.Id)}"
            foreach ($rule in @((Get-Acl -LiteralPath $path).Access | Where-Object { $_.AccessControlType -eq 'Allow' })) {
                $sid = ConvertTo-Sid ([string]$rule.IdentityReference)
                if ($wide -contains $sid -or $sid -like 'S-1-5-21-*-513') { $problems += "SYSVOL folder of '$($g.DisplayName)' grants $($rule.IdentityReference) $($rule.FileSystemRights)" }
            }
            Write-Step "GPO '$($g.DisplayName)' {$($g.Id)} sets the enrollment secret"
        }
        if (-not $gpos) { Write-Step 'no GPO of the domain sets the enrollment secret' }
        if ($gpos) { $manual += "as an ordinary domain user: dir \\$Domain\SYSVOL\$Domain\Policies\{$($gpos[0].Id)}\Machine must say Access is denied" }
    } else { $manual += "no GroupPolicy module here (RSAT): run -Point gpo-secret on a machine with GPMC, or check by hand: GPMC, the secret's GPO, Scope - Security Filtering without Authenticated Users, Delegation without user groups, icacls on its SYSVOL folder" }
    if ($problems) { Write-Result 'gpo-secret' FAIL ($problems -join '; ') }
    elseif ($manual) { Write-Result 'gpo-secret' MANUAL ($manual -join '; ') }
    else { Write-Result 'gpo-secret' PASS 'no GPO grants users read on the secret, no secret left on this host' }
}

Add-Point 'clock' "the host's clock agrees with the collector's" 'read' {
    $offset = $null; $against = ''
    if ($script:Api.Url) {
        try {
            [Net.ServicePointManager]::SecurityProtocol = [Net.ServicePointManager]::SecurityProtocol -bor [Net.SecurityProtocolType]::Tls12
            $resp = Invoke-WebRequest -UseBasicParsing -Method Head -Uri ($script:Api.Url + '/api/v1/whoami') -ErrorAction Stop
            $date = $resp.Headers['Date']
        } catch { $date = $null; if ($_.Exception.Response) { $date = $_.Exception.Response.Headers['Date'] } }
        if ($date) { $offset = ((Get-Date).ToUniversalTime() - (ConvertTo-Utc $date)).TotalSeconds; $against = 'the collector (HTTP Date)' }
    }
    if ($null -eq $offset) {
        $out = Invoke-Native { w32tm /stripchart /computer:$Domain /samples:3 /dataonly 2>&1 } | ForEach-Object { "$_" } | Select-String -Pattern ',\s*([+-][\d.]+)s' | Select-Object -Last 1
        if ($out) { $offset = - [double]$out.Matches[0].Groups[1].Value; $against = "$Domain (w32tm)" }
    }
    if ($null -eq $offset) { Write-Result 'clock' MANUAL 'no collector URL and no domain time source answered: compare the clock by hand (w32tm /stripchart /computer:<time source>)'; return }
    if ([math]::Abs($offset) -lt 60) { Write-Result 'clock' PASS ('clock within {0:N1} s of {1}' -f $offset, $against) }
    else { Write-Result 'clock' FAIL ('clock {0:N0} s off {1}: fix the time source (w32tm /query /status)' -f $offset, $against) }
}

Add-Point 'clock-fast' 'a host clock more than an hour fast' 'change' {
    if (-not (Confirm-Change 'the system clock (test VM only: Kerberos, TLS and every time-based thing on this host is affected)' "stop w32time, move the clock 65 minutes ahead for $WaitSeconds s, move it back and resynchronise")) { Write-Result 'clock-fast' MANUAL 'skipped: not confirmed'; return }
    $since = Get-Date; $w32 = (Get-Service w32time).Status
    try {
        Stop-Service w32time -Force
        Set-Date -Adjust ([timespan]::FromMinutes(65)) | Out-Null
        Start-Sleep -Seconds $WaitSeconds
    } finally {
        Set-Date -Adjust ([timespan]::FromMinutes(-65)) | Out-Null
        if ($w32 -eq 'Running') { Start-Service w32time; Invoke-Native { w32tm /resync /force 2>&1 } | Out-Null }
    }
    $lines = @(Get-AgentLog -Since $since.AddMinutes(-1) -Pattern 'REFUSED|ahead of the collector|agrees with the collector|uplink')
    $lines | Select-Object -Last 5 | ForEach-Object { Write-Step $_ }
    $refused = @($lines | Where-Object { $_ -match 'REFUSED a batch' })
    $warned = @($lines | Where-Object { $_ -match 'clock is ahead of the collector' })
    if ($refused) { Write-Result 'clock-fast' FAIL "$($refused.Count) 'collector REFUSED a batch' lines while the clock was ahead: the collector refuses reports over 1 h ahead (older than 2026-12-04?), and they stay spooled"; return }
    if (-not $warned) { Write-Result 'clock-fast' MANUAL "no 'clock is ahead of the collector' warning in agent.log: no batch went out while the clock was ahead? (-WaitSeconds longer than the poll interval). Check too that history after the clock came back is whole"; return }
    Write-Result 'clock-fast' PASS "no batch refused; the agent warned about the skew, and the collector stored the reports at corrected times. Check by hand that history after the clock came back is whole"
}

Add-Point 'time-zone' 'a time zone change moves no session and no boot' 'change' {
    $tz = Get-TimeZone
    $other = $(if ($tz.Id -ne 'Tokyo Standard Time') { 'Tokyo Standard Time' } else { 'Pacific Standard Time' })
    if (-not (Confirm-Change "time zone $($tz.Id)" "switch to $other for $WaitSeconds s, then back")) { Write-Result 'time-zone' MANUAL 'skipped: not confirmed'; return }
    $before = $null; $after = $null; $hb = $null; $ha = $null
    $bootBefore = (ConvertTo-Utc (Get-CimInstance Win32_OperatingSystem).LastBootUpTime)
    if (Test-Api) { $before = Get-CollectorWho (Get-MachineGuid); $hb = Get-CollectorHost (Get-MachineGuid) }
    try { Set-TimeZone -Id $other; Start-Sleep -Seconds $WaitSeconds; $bootDuring = (ConvertTo-Utc (Get-CimInstance Win32_OperatingSystem).LastBootUpTime) }
    finally { Set-TimeZone -Id $tz.Id }
    if (Test-Api) { $after = Get-CollectorWho (Get-MachineGuid); $ha = Get-CollectorHost (Get-MachineGuid) }
    $problems = @()
    if ([math]::Abs(($bootDuring - $bootBefore).TotalSeconds) -gt 1) { $problems += "WMI's LastBootUpTime in UTC moved by $(($bootDuring - $bootBefore).TotalSeconds) s" }
    if ($before -and $after) {
        $b = @{}; foreach ($r in $before.Logon) { $b[[string]$r.logon_id] = [string]$r.start }
        foreach ($r in $after.Logon) { if ($b.ContainsKey([string]$r.logon_id) -and $b[[string]$r.logon_id] -ne [string]$r.start) { $problems += "LogonId $($r.logon_id): start $($b[[string]$r.logon_id]) became $($r.start)" } }
        if ($hb -and $ha -and $hb.last_boot_time -ne $ha.last_boot_time) { $problems += "the collector's boot time moved: $($hb.last_boot_time) -> $($ha.last_boot_time)" }
    }
    if ($problems) { Write-Result 'time-zone' FAIL ($problems -join '; ') }
    elseif (Test-Api) { Write-Result 'time-zone' PASS "switched to $other and back: no session start and no boot time moved" }
    else { Write-Result 'time-zone' MANUAL "LastBootUpTime in UTC unchanged; with -ApiUrl the script compares the collector's session starts too. DST: on a test VM with w32time stopped, set the clock 2 minutes before a DST change of its zone, wait 5 minutes: expect the same" }
}

Add-Point 'gpo-install' 'installed by Group Policy Software Installation' 'read' {
    $p = @(Get-ItemProperty 'HKLM:\SOFTWARE\Microsoft\Windows\CurrentVersion\Uninstall\*' -ErrorAction SilentlyContinue | Where-Object { $_.PSObject.Properties['DisplayName'] -and $_.DisplayName -eq 'sessionaudit agent' })
    if (-not $p) { Write-Result 'gpo-install' FAIL "no 'sessionaudit agent' in Programs and Features"; return }
    if ($p.Count -gt 1) { Write-Result 'gpo-install' FAIL "$($p.Count) 'sessionaudit agent' products installed: two builds with the same version (docs/deploy-windows.md, Troubleshooting)"; return }
    $am = @(Get-ChildItem 'HKLM:\SOFTWARE\Microsoft\Windows\CurrentVersion\Group Policy\AppMgmt' -ErrorAction SilentlyContinue | ForEach-Object { Get-ItemProperty $_.PSPath } | Where-Object { $_.PSObject.Properties['Deployment Name'] -and $_.'Deployment Name' -like '*sessionaudit*' })
    $ev = @(Get-WinEvent -FilterHashtable @{ LogName = 'System'; Id = 301, 302, 303, 308 } -MaxEvents 200 -ErrorAction SilentlyContinue | Where-Object { $_.Message -match 'sessionaudit' })
    $ev | Select-Object -First 3 | ForEach-Object { Write-Step ('{0} {1}: {2}' -f $_.TimeCreated, $_.Id, ($_.Message -split "`n")[0]) }
    $svc = Get-AgentService
    if ($am -and $svc -and $svc.State -eq 'Running') { Write-Result 'gpo-install' PASS "version $($p[0].DisplayVersion) assigned by Group Policy ($($am[0].'Deployment Name')), service running" }
    elseif ($am) { Write-Result 'gpo-install' FAIL "assigned by Group Policy but the service is $($svc.State)" }
    else { Write-Result 'gpo-install' MANUAL "version $($p[0].DisplayVersion) installed, not by Group Policy Software Installation: to test that way, follow docs/deploy-windows.md step 4a on a test OU and run this point after two reboots" }
}

Add-Point 'memory-24h' "the agent's and WMI's memory stay flat for a day" 'long' {
    $csv = Join-Path $OutDir 'memory.csv'
    $end = (Get-Date).AddHours($MemoryHours)
    Write-Step "sampling every $MemoryIntervalMinutes min until $end into $csv"
    $samples = New-Object System.Collections.Generic.List[object]
    $pid0 = Get-AgentPid
    while ((Get-Date) -lt $end) {
        $agentPid = Get-AgentPid
        $agent = Get-Process -Id $agentPid -ErrorAction SilentlyContinue
        $wmi = @(Get-Process WmiPrvSE -ErrorAction SilentlyContinue)
        $row = [pscustomobject]@{
            Time = (Get-Date).ToUniversalTime().ToString('o'); AgentPid = $agentPid
            AgentPrivateMB = $(if ($agent) { [math]::Round($agent.PrivateMemorySize64 / 1MB, 2) } else { $null })
            AgentHandles = $(if ($agent) { $agent.HandleCount } else { $null })
            WmiPrvSECount = $wmi.Count; WmiPrivateMB = [math]::Round((($wmi | Measure-Object PrivateMemorySize64 -Sum).Sum) / 1MB, 2)
        }
        $samples.Add($row); $row | Export-Csv -NoTypeInformation -Append -Path $csv
        Start-Sleep -Seconds ([int]($MemoryIntervalMinutes * 60))
    }
    $perHour = [math]::Max(1, [int](60 / $MemoryIntervalMinutes))
    $median = { param($xs) $s = @($xs | Where-Object { $null -ne $_ } | Sort-Object); if ($s) { $s[[int][math]::Floor($s.Count / 2)] } else { 0 } }
    $firstHour = @($samples | Select-Object -Skip $perHour -First $perHour) # the hour after the first (warm-up)
    $lastHour = @($samples | Select-Object -Last $perHour)
    $agentGrowth = (& $median $lastHour.AgentPrivateMB) - (& $median $firstHour.AgentPrivateMB)
    $wmiGrowth = (& $median $lastHour.WmiPrivateMB) - (& $median $firstHour.WmiPrivateMB)
    $max = ($samples | Measure-Object AgentPrivateMB -Maximum).Maximum
    $restarts = @($samples | Where-Object { $_.AgentPid -ne $pid0 }).Count
    $text = 'agent private bytes max {0:N1} MB, growth {1:N1} MB (limit {2}), WmiPrvSE growth {3:N1} MB (limit {4}), agent restarts: {5}; {6}' -f $max, $agentGrowth, $AgentMaxGrowthMB, $wmiGrowth, $WmiMaxGrowthMB, $restarts, $csv
    if ($max -le $AgentMaxPrivateMB -and $agentGrowth -le $AgentMaxGrowthMB -and $wmiGrowth -le $WmiMaxGrowthMB -and $restarts -eq 0) { Write-Result 'memory-24h' PASS $text }
    else { Write-Result 'memory-24h' FAIL $text }
}

# -------------------------------------------------------------------- main

$unknown = @($Point | Where-Object { $_ -ne 'all' -and -not $Points.Contains($_) })
if ($unknown) { throw "unknown point(s): $($unknown -join ', '); known: $($Points.Keys -join ', '), all" }
$selected = @(
    if (-not $Point) { $Points.Values | Where-Object { $_.Kind -eq 'read' } }
    elseif ($Point -contains 'all') { $Points.Values }
    else { $Points.Values | Where-Object { $Point -contains $_.Id } }
)
New-Item -ItemType Directory -Force -Path $OutDir | Out-Null
Write-Host "sessionaudit test plan on $env:COMPUTERNAME ($((Get-CimInstance Win32_OperatingSystem).Caption)), $((Get-Date).ToUniversalTime().ToString('u')); output in $OutDir"
if (-not (Test-IsAdmin)) { Write-Result 'elevation' FAIL 'run this script elevated (as Administrator): the state directory and log are readable by Administrators only' }
foreach ($p in $selected) {
    Write-Host ''
    Write-Host "== $($p.Id): $($p.Title)" -ForegroundColor Cyan
    try { & $p.Run }
    catch { Write-Result $p.Id FAIL "the check itself failed: $($_.Exception.Message) (line $($_.InvocationInfo.ScriptLineNumber))" }
}
$script:Results | Export-Csv -NoTypeInformation -Encoding UTF8 -Path (Join-Path $OutDir 'results.csv')
$count = { param($s) @($script:Results | Where-Object { $_.Status -eq $s }).Count }
Write-Host ''
Write-Host ('{0} passed, {1} failed, {2} manual; results in {3}' -f (& $count 'PASS'), (& $count 'FAIL'), (& $count 'MANUAL'), (Join-Path $OutDir 'results.csv'))
if ((& $count 'FAIL') -gt 0) { exit 1 }
exit 0
