#Requires -RunAsAdministrator
<#
.SYNOPSIS
    Installs the OpenITDR collector (`itdr collect`) as the Windows service OpenITDRCollector on
    a domain controller (or a Windows Event Collector server).

.DESCRIPTION
    1. Creates a Python virtual environment under -InstallDir and installs the openitdr package
       with the `windows` extra (pywin32) from a wheel file or an index (-PackageSpec).
    2. Writes the configuration (-ConfigTemplate, default collector.yaml next to this script) to
       -DataDir\collector.yaml, filling in -BootstrapServers / -SensorId / -SaslUsername.
    3. Stores the Kafka SASL password (if given) as %ITDR_SECRETS_DIR%\itdr_kafka, readable only
       by SYSTEM, Administrators and the service account.
    4. Registers the service with WinSW (a small service wrapper, MIT licence:
       https://github.com/winsw/winsw/releases; pass its exe as -WinSWPath) because `itdr collect`
       is a console program, then sets the logon account:
         - default: the virtual account NT SERVICE\OpenITDRCollector (no password to manage), or
         - -GmsaAccount CORP\svc-openitdr$ (group managed service account; run
           Install-ADServiceAccount first and allow this host to retrieve its password).
    5. Adds the account to the built-in "Event Log Readers" group (read the Security log) and
       grants it Modify on -DataDir (checkpoints, spool).
    6. Optionally opens the metrics port in Windows Firewall for -MetricsScrapers.

.EXAMPLE
    .\Install-OpenITDRCollector.ps1 -WheelPath .\openitdr-0.1.0-py3-none-any.whl `
        -WinSWPath .\WinSW-x64.exe -BootstrapServers kafka-0.corp.example:9093 `
        -SaslUsername sensor-dc01 -SaslPassword (Read-Host -AsSecureString 'SASL password')
.EXAMPLE
    .\Install-OpenITDRCollector.ps1 -PackageSpec 'openitdr[windows]==0.1.0' -WinSWPath .\WinSW-x64.exe `
        -GmsaAccount 'CORP\svc-openitdr$' -BootstrapServers kafka.corp.example:9093
#>
[CmdletBinding(SupportsShouldProcess = $true)]
param(
    [Parameter(Mandatory = $true)][string]$BootstrapServers,
    [Parameter(Mandatory = $true)][string]$WinSWPath,
    [string]$WheelPath,
    [string]$PackageSpec = 'openitdr[windows]',
    [string]$PythonExe = 'py.exe',
    [string]$InstallDir = "$env:ProgramFiles\OpenITDR",
    [string]$DataDir = "$env:ProgramData\OpenITDR",
    [string]$ConfigTemplate = (Join-Path $PSScriptRoot 'collector.yaml'),
    [string]$SensorId = $env:COMPUTERNAME.ToLowerInvariant(),
    [string]$SaslUsername,
    [securestring]$SaslPassword,
    [string]$GmsaAccount,
    [string]$ServiceName = 'OpenITDRCollector',
    [string[]]$MetricsScrapers = @(),
    [int]$MetricsPort = 9108
)

Set-StrictMode -Version Latest
$ErrorActionPreference = 'Stop'

$venv = Join-Path $InstallDir 'venv'
$itdr = Join-Path $venv 'Scripts\itdr.exe'
$config = Join-Path $DataDir 'collector.yaml'
$secrets = Join-Path $DataDir 'secrets'
$account = if ($GmsaAccount) { $GmsaAccount } else { "NT SERVICE\$ServiceName" }

# -- 1. Python environment and package -------------------------------------------------------
if ($PSCmdlet.ShouldProcess($venv, 'create virtual environment and install openitdr')) {
    New-Item -ItemType Directory -Force -Path $InstallDir, $DataDir, $secrets | Out-Null
    & $PythonExe -3.11 -m venv $venv
    if ($LASTEXITCODE -ne 0) { throw "Python 3.11+ not found ($PythonExe). Install it for all users first." }
    $pip = Join-Path $venv 'Scripts\python.exe'
    & $pip -m pip install --upgrade pip | Out-Null
    if ($WheelPath) {
        $wheel = (Resolve-Path $WheelPath).Path
        & $pip -m pip install "$wheel[windows]"
    } else {
        & $pip -m pip install $PackageSpec
    }
    if ($LASTEXITCODE -ne 0) { throw 'pip install failed' }
    & $pip -m pywin32_postinstall -install 2>$null | Out-Null
}

# -- 2. Configuration --------------------------------------------------------------------------
if ($PSCmdlet.ShouldProcess($config, 'write collector configuration')) {
    $text = Get-Content -Raw -Path $ConfigTemplate
    $text = $text -replace '(?m)^(\s*bootstrap_servers:).*$', "`$1 $BootstrapServers"
    $text = $text -replace '(?m)^(\s*sensor_id:).*$', "`$1 $SensorId"
    $text = $text -replace '(?m)^(\s*client_id:).*$', "`$1 openitdr-$SensorId"
    $dataFwd = $DataDir -replace '\\', '/'
    $text = $text -replace 'C:/ProgramData/OpenITDR', $dataFwd
    if ($SaslUsername) { $text = $text -replace '(?m)^(\s*sasl_username:).*$', "`$1 $SaslUsername" }
    Set-Content -Path $config -Value $text -Encoding UTF8
    & $itdr config check -c $config
    if ($LASTEXITCODE -ne 0) { throw "configuration $config is not valid (see above)" }
}

# -- 3. Secret file (SASL password) --------------------------------------------------------------
function Set-PrivateAcl([string]$Path, [string]$Rights) {
    $acl = New-Object System.Security.AccessControl.DirectorySecurity
    if (Test-Path $Path -PathType Leaf) { $acl = New-Object System.Security.AccessControl.FileSecurity }
    $acl.SetAccessRuleProtection($true, $false)   # no inheritance
    foreach ($id in @('NT AUTHORITY\SYSTEM', 'BUILTIN\Administrators', $account)) {
        $rule = New-Object System.Security.AccessControl.FileSystemAccessRule($id, $Rights, 'ContainerInherit,ObjectInherit', 'None', 'Allow')
        if (Test-Path $Path -PathType Leaf) { $rule = New-Object System.Security.AccessControl.FileSystemAccessRule($id, $Rights, 'Allow') }
        $acl.AddAccessRule($rule)
    }
    Set-Acl -Path $Path -AclObject $acl
}

# -- 4. Service ----------------------------------------------------------------------------------
$svcDir = Join-Path $InstallDir 'service'
$svcExe = Join-Path $svcDir "$ServiceName.exe"
if ($PSCmdlet.ShouldProcess($ServiceName, "register Windows service (WinSW) running as $account")) {
    New-Item -ItemType Directory -Force -Path $svcDir | Out-Null
    Copy-Item -Force $WinSWPath $svcExe
    @"
<service>
  <id>$ServiceName</id>
  <name>OpenITDR Collector</name>
  <description>OpenITDR: reads Security/System events of this domain controller and sends them to Kafka (itdr collect).</description>
  <executable>$itdr</executable>
  <arguments>collect --config "$config" --log-level INFO</arguments>
  <workingdirectory>$DataDir</workingdirectory>
  <env name="ITDR_CONFIG" value="$config"/>
  <env name="ITDR_SECRETS_DIR" value="$secrets"/>
  <env name="NUMBA_CACHE_DIR" value="$DataDir\numba-cache"/>
  <startmode>Automatic</startmode>
  <delayedAutoStart>true</delayedAutoStart>
  <stoptimeout>30 sec</stoptimeout>
  <onfailure action="restart" delay="10 sec"/>
  <onfailure action="restart" delay="60 sec"/>
  <resetfailure>1 hour</resetfailure>
  <log mode="roll-by-size"><sizeThreshold>10240</sizeThreshold><keepFiles>8</keepFiles></log>
  <logpath>$DataDir\logs</logpath>
</service>
"@ | Set-Content -Path (Join-Path $svcDir "$ServiceName.xml") -Encoding UTF8
    if (Get-Service -Name $ServiceName -ErrorAction SilentlyContinue) {
        & $svcExe stop | Out-Null
        & $svcExe uninstall | Out-Null
    }
    & $svcExe install
    if ($LASTEXITCODE -ne 0) { throw 'service registration failed' }
    # Logon account: virtual account (no password) or gMSA (password managed by AD).
    & sc.exe config $ServiceName obj= "$account" password= "" | Out-Null
    if ($LASTEXITCODE -ne 0) { throw "could not set the service account $account" }
    & sc.exe sidtype $ServiceName unrestricted | Out-Null
}

# -- 5. Permissions: Event Log Readers, data directory, secret ------------------------------------
if ($PSCmdlet.ShouldProcess($account, 'add to Event Log Readers (S-1-5-32-573) and grant Modify on the data directory')) {
    $group = (New-Object System.Security.Principal.SecurityIdentifier('S-1-5-32-573')).Translate([System.Security.Principal.NTAccount]).Value
    $members = @(Get-LocalGroupMember -SID 'S-1-5-32-573' -ErrorAction SilentlyContinue | ForEach-Object { $_.Name })
    if ($members -notcontains $account) {
        # On a DC Event Log Readers is a domain-local group: use net.exe, which handles both.
        & net.exe localgroup "$($group.Split('\')[-1])" "$account" /add | Out-Null
    }
    Set-PrivateAcl -Path $DataDir -Rights 'Modify'
    if ($SaslPassword) {
        $plain = [Runtime.InteropServices.Marshal]::PtrToStringBSTR([Runtime.InteropServices.Marshal]::SecureStringToBSTR($SaslPassword))
        $file = Join-Path $secrets 'itdr_kafka'
        (@{ sasl_password = $plain } | ConvertTo-Json -Compress) | Set-Content -Path $file -Encoding ASCII -NoNewline
        $plain = $null
        Set-PrivateAcl -Path $file -Rights 'Read'
    }
}

# -- 6. Firewall for metrics scrapers ---------------------------------------------------------------
if ($MetricsScrapers.Count -gt 0 -and $PSCmdlet.ShouldProcess("TCP $MetricsPort", 'allow Prometheus scrapers')) {
    New-NetFirewallRule -DisplayName 'OpenITDR collector metrics' -Direction Inbound -Protocol TCP `
        -LocalPort $MetricsPort -RemoteAddress $MetricsScrapers -Action Allow -Profile Domain | Out-Null
}

if ($PSCmdlet.ShouldProcess($ServiceName, 'start')) {
    Start-Service -Name $ServiceName
    Get-Service -Name $ServiceName | Format-Table -AutoSize Name, Status, StartType
}
Write-Host "Installed. Logs: $DataDir\logs. Configuration: $config. Audit policy: .\Set-OpenITDRAuditPolicy.ps1"
