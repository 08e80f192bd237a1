//! Boots a disk image under qemu (UEFI firmware, software emulation: no KVM
//! here) and watches its serial console for markers.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const OVMF_CODE: &str = "/usr/share/OVMF/OVMF_CODE_4M.fd";
const OVMF_VARS: &str = "/usr/share/OVMF/OVMF_VARS_4M.fd";

pub struct Boot {
    child: Child,
    pub serial: PathBuf,
}

impl Boot {
    /// Starts qemu on `disk` (written to: first boot repartitions it) with
    /// `extra` drives attached read-only; `dir` holds the firmware vars and
    /// the serial log.
    pub fn start(dir: &Path, disk: &Path, extra: &[&Path]) -> Boot {
        let vars = dir.join("vars.fd");
        fs::copy(OVMF_VARS, &vars).expect("OVMF vars (package ovmf)");
        let serial = dir.join("serial.log");
        let _ = fs::remove_file(&serial);
        let mut cmd = Command::new("qemu-system-x86_64");
        cmd.args([
            "-machine", "q35", "-accel", "tcg", "-m", "1536", "-smp", "2",
        ])
        .args(["-display", "none", "-nodefaults", "-no-reboot"])
        .arg("-drive")
        .arg(format!(
            "if=pflash,format=raw,unit=0,readonly=on,file={OVMF_CODE}"
        ))
        .arg("-drive")
        .arg(format!(
            "if=pflash,format=raw,unit=1,file={}",
            vars.display()
        ))
        .arg("-drive")
        .arg(format!("if=virtio,format=raw,file={}", disk.display()));
        for d in extra {
            cmd.arg("-drive").arg(format!(
                "if=virtio,format=raw,readonly=on,file={}",
                d.display()
            ));
        }
        cmd.arg("-serial")
            .arg(format!("file:{}", serial.display()))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let child = cmd
            .spawn()
            .expect("qemu-system-x86_64 (package qemu-system-x86)");
        Boot { child, serial }
    }

    pub fn log(&self) -> String {
        fs::read(&self.serial)
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default()
    }

    /// Waits until the serial log holds one of `markers` (returns it), the
    /// VM stops, or `limit` passes.
    pub fn wait_for(&mut self, markers: &[&str], limit: Duration) -> Option<String> {
        let start = Instant::now();
        while start.elapsed() < limit {
            let log = self.log();
            if let Some(m) = markers.iter().find(|m| log.contains(*m)) {
                return Some(m.to_string());
            }
            if let Ok(Some(_)) = self.child.try_wait() {
                let log = self.log();
                return markers
                    .iter()
                    .find(|m| log.contains(*m))
                    .map(|m| m.to_string());
            }
            std::thread::sleep(Duration::from_millis(500));
        }
        None
    }

    /// The text between two marker lines, once both are in the log.
    pub fn between(&mut self, begin: &str, end: &str, limit: Duration) -> Option<String> {
        self.wait_for(&[end], limit)?;
        let log = self.log();
        let from = log.find(begin)? + begin.len();
        let to = from + log[from..].find(end)?;
        Some(log[from..to].to_string())
    }
}

impl Drop for Boot {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
