#Requires -RunAsAdministrator
<#
.SYNOPSIS
    Configures the Windows auditing OpenITDR detectors need on a domain controller:
    advanced audit policy subcategories, NTLM auditing (event 8004) and the directory SACLs
    that make 4662 / 5136 / 5137 appear (domain NC root, AdminSDHolder, DPAPI backup keys).

.DESCRIPTION
    Run on each domain controller (the audit policy is local), or better: put the same
    subcategories in the "Default Domain Controllers Policy" GPO (Computer Configuration >
    Policies > Windows Settings > Security Settings > Advanced Audit Policy Configuration) and
    run this script once with -SaclOnly (SACLs live in Active Directory and replicate).
    The event id -> detector mapping is in audit-policy.md next to this script.

    Subcategories are addressed by GUID, so the script works on non-English Windows.
    Supports -WhatIf / -Confirm.

.PARAMETER SkipAuditPolicy
    Do not change the local advanced audit policy (auditpol).
.PARAMETER SaclOnly
    Only set the directory SACLs (same as -SkipAuditPolicy -SkipNtlmAuditing).
.PARAMETER SkipSacl
    Do not change SACLs in Active Directory.
.PARAMETER SkipNtlmAuditing
    Do not enable NTLM auditing (event 8004, used by ntlm-relay).
.PARAMETER IncludeReadAuditing
    Also audit property reads of user objects (4662 "Read Property", used by ldap-recon) and
    reads of the DPAPI backup-key secrets (dpapi-backup-key). Noisy on large domains.
.PARAMETER ExcludeDetailedFileShare
    Do not enable "Detailed File Share" (5145). 5145 is noisy but needed by samr-recon,
    smb-session-enumeration, remote-execution, coercion and dpapi-backup-key.

.EXAMPLE
    .\Set-OpenITDRAuditPolicy.ps1 -WhatIf
.EXAMPLE
    .\Set-OpenITDRAuditPolicy.ps1 -IncludeReadAuditing
#>
[CmdletBinding(SupportsShouldProcess = $true, ConfirmImpact = 'High')]
param(
    [switch]$SkipAuditPolicy,
    [switch]$SaclOnly,
    [switch]$SkipSacl,
    [switch]$SkipNtlmAuditing,
    [switch]$IncludeReadAuditing,
    [switch]$ExcludeDetailedFileShare
)

Set-StrictMode -Version Latest
$ErrorActionPreference = 'Stop'

if ($SaclOnly) { $SkipAuditPolicy = $true; $SkipNtlmAuditing = $true }

# Subcategory GUID, English name, success, failure, event ids (see audit-policy.md).
$Subcategories = @(
    @{ Guid = '{0CCE923F-69AE-11D9-BED3-505054503030}'; Name = 'Credential Validation';                  Success = $true; Failure = $true;  Events = '4776' }
    @{ Guid = '{0CCE9242-69AE-11D9-BED3-505054503030}'; Name = 'Kerberos Authentication Service';        Success = $true; Failure = $true;  Events = '4768 4771' }
    @{ Guid = '{0CCE9240-69AE-11D9-BED3-505054503030}'; Name = 'Kerberos Service Ticket Operations';     Success = $true; Failure = $true;  Events = '4769' }
    @{ Guid = '{0CCE9215-69AE-11D9-BED3-505054503030}'; Name = 'Logon';                                  Success = $true; Failure = $true;  Events = '4624 4625 4648' }
    @{ Guid = '{0CCE9249-69AE-11D9-BED3-505054503030}'; Name = 'Group Membership';                       Success = $true; Failure = $false; Events = '4627' }
    @{ Guid = '{0CCE9235-69AE-11D9-BED3-505054503030}'; Name = 'User Account Management';                Success = $true; Failure = $true;  Events = '4738 4765 4766 4781 4794 4798' }
    @{ Guid = '{0CCE9236-69AE-11D9-BED3-505054503030}'; Name = 'Computer Account Management';            Success = $true; Failure = $true;  Events = '4741 4742' }
    @{ Guid = '{0CCE9237-69AE-11D9-BED3-505054503030}'; Name = 'Security Group Management';              Success = $true; Failure = $true;  Events = '4728 4729 4732 4733 4756 4757 4799' }
    @{ Guid = '{0CCE923B-69AE-11D9-BED3-505054503030}'; Name = 'Directory Service Access';               Success = $true; Failure = $true;  Events = '4661 4662' }
    @{ Guid = '{0CCE923C-69AE-11D9-BED3-505054503030}'; Name = 'Directory Service Changes';              Success = $true; Failure = $true;  Events = '5136 5137' }
    @{ Guid = '{0CCE923E-69AE-11D9-BED3-505054503030}'; Name = 'Detailed Directory Service Replication'; Success = $true; Failure = $true;  Events = '4928 4929' }
    @{ Guid = '{0CCE9220-69AE-11D9-BED3-505054503030}'; Name = 'SAM';                                    Success = $true; Failure = $true;  Events = '4661' }
    @{ Guid = '{0CCE9224-69AE-11D9-BED3-505054503030}'; Name = 'File Share';                             Success = $true; Failure = $true;  Events = '5140' }
    @{ Guid = '{0CCE9244-69AE-11D9-BED3-505054503030}'; Name = 'Detailed File Share';                    Success = $true; Failure = $true;  Events = '5145' }
    @{ Guid = '{0CCE9227-69AE-11D9-BED3-505054503030}'; Name = 'Other Object Access Events';             Success = $true; Failure = $true;  Events = '4698' }
    @{ Guid = '{0CCE9211-69AE-11D9-BED3-505054503030}'; Name = 'Security System Extension';              Success = $true; Failure = $true;  Events = '4697' }
    @{ Guid = '{0CCE922F-69AE-11D9-BED3-505054503030}'; Name = 'Audit Policy Change';                    Success = $true; Failure = $true;  Events = '4719' }
)

function Set-AuditSubcategories {
    # Advanced audit policy only takes effect when legacy category policy is not forced.
    $lsa = 'HKLM:\SYSTEM\CurrentControlSet\Control\Lsa'
    if ($PSCmdlet.ShouldProcess($lsa, 'SCENoApplyLegacyAuditPolicy = 1 (force subcategory settings)')) {
        Set-ItemProperty -Path $lsa -Name SCENoApplyLegacyAuditPolicy -Value 1 -Type DWord
    }
    foreach ($s in $Subcategories) {
        if ($ExcludeDetailedFileShare -and $s.Name -eq 'Detailed File Share') {
            Write-Warning "Skipping Detailed File Share (5145): samr-recon, smb-session-enumeration, remote-execution, coercion and dpapi-backup-key lose evidence."
            continue
        }
        $succ = if ($s.Success) { 'enable' } else { 'disable' }
        $fail = if ($s.Failure) { 'enable' } else { 'disable' }
        if ($PSCmdlet.ShouldProcess("$($s.Name) $($s.Guid)", "auditpol success:$succ failure:$fail (events $($s.Events))")) {
            & auditpol.exe /set "/subcategory:$($s.Guid)" "/success:$succ" "/failure:$fail" | Out-Null
            if ($LASTEXITCODE -ne 0) { throw "auditpol failed for $($s.Name) ($($s.Guid)): exit $LASTEXITCODE" }
        }
    }
    if (-not $WhatIfPreference) {
        Write-Host 'Effective audit policy:'
        foreach ($s in $Subcategories) { & auditpol.exe /get "/subcategory:$($s.Guid)" | Select-Object -Last 1 }
    }
}

function Set-NtlmAuditing {
    # "Network security: Restrict NTLM: ..." policies, registry form (DCs). Event 8004 goes to
    # Applications and Services Logs > Microsoft > Windows > NTLM > Operational.
    $msv = 'HKLM:\SYSTEM\CurrentControlSet\Control\Lsa\MSV1_0'
    $netlogon = 'HKLM:\SYSTEM\CurrentControlSet\Services\Netlogon\Parameters'
    $settings = @(
        @{ Path = $msv;      Name = 'AuditReceivingNTLMTraffic';  Value = 2; Doc = 'Audit Incoming NTLM Traffic = Enable auditing for all accounts' }
        @{ Path = $msv;      Name = 'RestrictSendingNTLMTraffic'; Value = 1; Doc = 'Outgoing NTLM traffic to remote servers = Audit all' }
        @{ Path = $netlogon; Name = 'AuditNTLMInDomain';          Value = 7; Doc = 'Audit NTLM authentication in this domain = Enable all' }
    )
    foreach ($s in $settings) {
        if ($PSCmdlet.ShouldProcess("$($s.Path)\$($s.Name)", "set $($s.Value) ($($s.Doc))")) {
            if (-not (Test-Path $s.Path)) { New-Item -Path $s.Path -Force | Out-Null }
            Set-ItemProperty -Path $s.Path -Name $s.Name -Value $s.Value -Type DWord
        }
    }
}

function Add-AuditRule {
    param([string]$DistinguishedName, [System.DirectoryServices.ActiveDirectoryAuditRule]$Rule, [string]$Why)
    $path = "AD:\$DistinguishedName"
    $acl = Get-Acl -Path $path -Audit
    $exists = $acl.GetAuditRules($true, $false, [System.Security.Principal.SecurityIdentifier]) |
        Where-Object {
            $_.IdentityReference -eq $Rule.IdentityReference -and
            $_.ActiveDirectoryRights -eq $Rule.ActiveDirectoryRights -and
            $_.AuditFlags -eq $Rule.AuditFlags -and
            $_.InheritanceType -eq $Rule.InheritanceType -and
            $_.InheritedObjectType -eq $Rule.InheritedObjectType
        }
    if ($exists) { Write-Host "SACL already present on ${DistinguishedName}: $Why"; return }
    if ($PSCmdlet.ShouldProcess($DistinguishedName, "add SACL: $Why")) {
        $acl.AddAuditRule($Rule)
        Set-Acl -Path $path -AclObject $acl
    }
}

function Set-DirectorySacls {
    Import-Module ActiveDirectory
    $domain = Get-ADDomain
    $root = $domain.DistinguishedName
    $everyone = New-Object System.Security.Principal.SecurityIdentifier('S-1-1-0')
    $R = [System.DirectoryServices.ActiveDirectoryRights]
    $success = [System.Security.AccessControl.AuditFlags]::Success
    $inh = [System.DirectoryServices.ActiveDirectorySecurityInheritance]
    $none = [guid]::Empty
    $writes = $R::WriteProperty -bor $R::WriteDacl -bor $R::WriteOwner -bor $R::CreateChild -bor
              $R::DeleteChild -bor $R::Delete -bor $R::DeleteTree -bor $R::Self

    # 1) Domain NC root, this object: extended rights (replication: DS-Replication-Get-Changes[-All]) -> 4662 (dcsync)
    Add-AuditRule $root (New-Object System.DirectoryServices.ActiveDirectoryAuditRule(
        $everyone, $R::ExtendedRight, $success, $none, $inh::None, $none)) `
        '4662 on extended rights of the domain root (dcsync, dcshadow)'

    # 2) Domain NC root and descendants: every write -> 5136/5137 (and 4662 write events)
    Add-AuditRule $root (New-Object System.DirectoryServices.ActiveDirectoryAuditRule(
        $everyone, $writes, $success, $none, $inh::All, $none)) `
        '5136/5137 on all writes below the domain root (shadow-credentials, rbcd-change, sid-history-injection, delegation-change, risky-account-change, domain-acl-change, dcshadow, honeytoken-activity)'

    # 3) AdminSDHolder: writes and permission changes (explicit, so it survives SACL edits on the root)
    $adminSdHolder = "CN=AdminSDHolder,CN=System,$root"
    Add-AuditRule $adminSdHolder (New-Object System.DirectoryServices.ActiveDirectoryAuditRule(
        $everyone, ($R::WriteProperty -bor $R::WriteDacl -bor $R::WriteOwner), $success, $none, $inh::None, $none)) `
        '5136/4662 on AdminSDHolder (adminsdholder-change)'

    if ($IncludeReadAuditing) {
        # 4) Reads of user objects -> 4662 Read Property (ldap-recon). Noisy.
        $userClass = [guid]'bf967aba-0de6-11d0-a285-00aa003049e2'
        Add-AuditRule $root (New-Object System.DirectoryServices.ActiveDirectoryAuditRule(
            $everyone, $R::ReadProperty, $success, $none, $inh::Descendents, $userClass)) `
            '4662 Read Property on user objects (ldap-recon, honeytoken-activity)'
        # 5) DPAPI domain backup keys (BCKUPKEY_* secrets under CN=System) -> 4662 (dpapi-backup-key)
        Get-ADObject -SearchBase "CN=System,$root" -LDAPFilter '(cn=BCKUPKEY*)' | ForEach-Object {
            Add-AuditRule $_.DistinguishedName (New-Object System.DirectoryServices.ActiveDirectoryAuditRule(
                $everyone, ($R::ReadProperty -bor $R::ExtendedRight), $success, $none, $inh::None, $none)) `
                '4662 on DPAPI backup key secret (dpapi-backup-key)'
        }
    }
}

if (-not $SkipAuditPolicy) { Set-AuditSubcategories }
if (-not $SkipNtlmAuditing) { Set-NtlmAuditing }
if (-not $SkipSacl) { Set-DirectorySacls }
Write-Host 'Done. Check with: auditpol /get /category:* and the SACLs in ADSI Edit (Security > Advanced > Auditing).'
