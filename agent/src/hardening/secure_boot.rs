//! **Secure Boot**: on, as the firmware reports it (the `SecureBoot` EFI
//! variable). Off, anyone at the console can boot another medium or change
//! the kernel command line, and with it reach root past the verified image.
//! A warning until the images are signed for Secure Boot (docs/status.md).

use std::io::Read;
use std::path::Path;

use super::files::{io_reason, open_regular, under_root};
use super::{Audit, Scope, Severity};

/// Where the kernel shows EFI variables (efivarfs).
const EFI_DIR: &str = "/sys/firmware/efi";
/// The `SecureBoot` variable of the EFI global variable GUID (UEFI 2.10,
/// section 3.3): four bytes of attributes, then one byte, 1 when on.
pub(super) const SECURE_BOOT_VAR: &str =
    "/sys/firmware/efi/efivars/SecureBoot-8be4df61-93ca-11d2-aa0d-00e098032b8c";
/// The consequence, said where the finding is shown.
const OFF: &str =
    "off: anyone at the console can boot another medium or change the kernel command line";

/// What the firmware says of Secure Boot; Err(reason) when it cannot be read.
fn secure_boot_on(root: &Path) -> Result<bool, String> {
    let efi = under_root(root, Path::new(EFI_DIR))?;
    if !efi.is_dir() {
        return Err(format!(
            "{EFI_DIR}: not found (not booted through UEFI, or not a running node): cannot audit"
        ));
    }
    let var = under_root(root, Path::new(SECURE_BOOT_VAR))?;
    if !var.exists() {
        // UEFI without the variable: firmware that has no Secure Boot.
        return Ok(false);
    }
    let (file, _) = open_regular(&var)?;
    let mut bytes = Vec::new();
    file.take(64)
        .read_to_end(&mut bytes)
        .map_err(|e| io_reason(&e))?;
    match bytes.as_slice() {
        [_, _, _, _, value] => Ok(*value == 1),
        _ => Err(format!(
            "{} bytes where 5 were expected: cannot audit",
            bytes.len()
        )),
    }
}

pub(super) fn audit_secure_boot(s: &mut Scope<'_>, a: &mut Audit) {
    match secure_boot_on(s.root) {
        Ok(on) => {
            a.checked.push("secure boot".to_string());
            if !on {
                a.finding(Severity::Warn, "secure boot", "on", OFF, SECURE_BOOT_VAR);
            }
        }
        Err(reason) => a.errors.push(format!("secure boot: {reason}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hardening::fixture::*;

    /// The variable as efivarfs shows it: attributes (non-volatile, boot
    /// service and runtime access), then the value.
    fn var(value: u8) -> String {
        String::from_utf8(vec![0x06, 0, 0, 0, value]).unwrap()
    }

    #[test]
    fn secure_boot_on_is_no_finding() {
        let n = Node::compliant();
        n.write(SECURE_BOOT_VAR, &var(1), 0o644);
        let a = n.audit();
        assert!(a.findings.is_empty(), "{a:#?}");
        assert!(a.checked.iter().any(|c| c == "secure boot"), "{a:#?}");
    }

    /// The audit's one finding is Secure Boot off, a warning.
    fn assert_off(n: &Node) {
        let a = n.audit();
        let f = only(&a);
        assert_finding(f, "secure boot", "on", OFF, Severity::Warn, SECURE_BOOT_VAR);
        assert!(f.found.contains("anyone at the console"));
    }

    #[test]
    fn secure_boot_off_is_a_warning_naming_the_console() {
        let n = Node::compliant();
        n.write(SECURE_BOOT_VAR, &var(0), 0o644);
        assert_off(&n);
    }

    #[test]
    fn uefi_without_the_variable_is_secure_boot_off() {
        let n = Node::compliant();
        std::fs::remove_file(n.host(SECURE_BOOT_VAR)).unwrap();
        assert_off(&n);
    }

    #[test]
    fn no_efi_directory_or_a_malformed_variable_cannot_be_audited() {
        let n = Node::compliant();
        n.write(SECURE_BOOT_VAR, "\u{6}\0\0", 0o644);
        let a = n.audit();
        assert!(a.findings.is_empty(), "{a:#?}");
        assert!(
            a.errors
                .iter()
                .any(|e| e.contains("secure boot") && e.contains("3 bytes")),
            "{a:#?}"
        );
        std::fs::remove_dir_all(n.host("/sys")).unwrap();
        let a = n.audit();
        assert!(a.findings.is_empty(), "{a:#?}");
        assert!(
            a.errors
                .iter()
                .any(|e| e.contains("/sys/firmware/efi: not found")),
            "{a:#?}"
        );
    }
}
