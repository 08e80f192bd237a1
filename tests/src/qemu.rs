//! Boots a disk image under qemu (UEFI firmware, software emulation: no KVM
//! here) and watches its serial console for markers. The guest has one
//! network card on qemu's user-mode network, restricted (it reaches
//! nothing outside the VM), with its ports 22 and 443 forwarded to free
//! ports on the host's 127.0.0.1 ([`Boot::ssh_port`], [`Boot::https_port`]).
//! [`Boot::start_with_monitor`] adds qemu's monitor on a socket and a free
//! PCIe slot, so a test can plug a drive in while the guest runs
//! ([`Boot::hotplug_drive`]).

use std::fs;
use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const OVMF_CODE: &str = "/usr/share/OVMF/OVMF_CODE_4M.fd";
const OVMF_VARS: &str = "/usr/share/OVMF/OVMF_VARS_4M.fd";

/// What the initramfs prints before it touches the image's partitions:
/// a kernel panic before this line happened before anything of ours ran.
const ROOT_MOUNT_BEGINS: &str = "Mounting root file system";
const KERNEL_PANIC: &str = "Kernel panic - not syncing";
/// How often a VM is started again after an emulator fault. Under TCG
/// with two vCPUs the kernel's own code patching (int3 while another CPU
/// runs the patched code) faults early in about one boot in five here.
const EMULATOR_FAULT_RESTARTS: u32 = 3;

pub struct Boot {
    child: Child,
    command: Command,
    /// Restarts left after an emulator fault (see [`Boot::wait_for`]).
    restarts_left: u32,
    pub serial: PathBuf,
    /// The host port (on 127.0.0.1) that reaches the guest's port 22.
    pub ssh_port: u16,
    /// The host port (on 127.0.0.1) that reaches the guest's nginx on 443.
    pub https_port: u16,
    /// qemu's human monitor, when the VM was started with one.
    monitor: Option<PathBuf>,
}

/// The emulated machine: its memory and CPU model.
#[derive(Clone, Copy)]
pub struct Guest {
    pub memory_mib: u32,
    /// qemu's `-cpu`: TCG's default `qemu64` lacks SSE4.2 and POPCNT
    /// (x86-64-v2), which Python wheels such as numpy's take as given;
    /// `max` has every feature TCG emulates.
    pub cpu: &'static str,
}

impl Guest {
    /// What a boot test of the agent and its units needs.
    pub const SMALL: Guest = Guest {
        memory_mib: 1536,
        cpu: "qemu64",
    };
    /// A guest that runs Open WebUI, PostgreSQL, Redis, nginx and
    /// llama-server, as any x86-64-v2 server does.
    pub const SERVING: Guest = Guest {
        memory_mib: 3072,
        cpu: "max",
    };
}

/// The PCIe root port a hot-plugged drive goes into (q35's root bus itself
/// takes no hot-plugged device).
const HOTPLUG_PORT: &str = "hotplug0";

impl Boot {
    /// Starts qemu on `disk` (written to: first boot repartitions it) with
    /// `extra` drives attached read-only; `dir` holds the firmware vars and
    /// the serial log.
    pub fn start(dir: &Path, disk: &Path, extra: &[&Path]) -> Boot {
        Boot::start_guest(dir, disk, extra, Guest::SMALL)
    }

    /// [`Boot::start`] on another [`Guest`].
    pub fn start_guest(dir: &Path, disk: &Path, extra: &[&Path], guest: Guest) -> Boot {
        let (cmd, serial, ssh_port, https_port) = Boot::command(dir, disk, extra, guest);
        Boot::spawn(cmd, serial, ssh_port, https_port)
    }

    /// [`Boot::start`] with qemu's monitor on a socket in `dir` and an empty
    /// PCIe port for [`Boot::hotplug_drive`].
    pub fn start_with_monitor(dir: &Path, disk: &Path, extra: &[&Path]) -> Boot {
        let (mut cmd, serial, ssh_port, https_port) = Boot::command(dir, disk, extra, Guest::SMALL);
        let monitor = dir.join("monitor.sock");
        let _ = fs::remove_file(&monitor);
        cmd.arg("-monitor")
            .arg(format!("unix:{},server=on,wait=off", monitor.display()))
            .arg("-device")
            .arg(format!("pcie-root-port,id={HOTPLUG_PORT},chassis=1"));
        let mut boot = Boot::spawn(cmd, serial, ssh_port, https_port);
        boot.monitor = Some(monitor);
        boot
    }

    /// Plugs `image` into the running VM as a read-only virtio disk, as a
    /// technician plugs in a stick; returns what the monitor answered.
    pub fn hotplug_drive(&self, id: &str, image: &Path) -> String {
        let socket = self.monitor.as_ref().expect("started with a monitor");
        let mut monitor = UnixStream::connect(socket).expect("qemu's monitor socket");
        monitor
            .set_read_timeout(Some(Duration::from_secs(30)))
            .unwrap();
        let mut answer = monitor_reply(&mut monitor);
        for command in [
            format!(
                "drive_add 0 if=none,id={id},format=raw,readonly=on,file={}",
                image.display()
            ),
            format!("device_add virtio-blk-pci,drive={id},id={id}-dev,bus={HOTPLUG_PORT}"),
        ] {
            monitor
                .write_all(format!("{command}\n").as_bytes())
                .unwrap();
            answer.push_str(&monitor_reply(&mut monitor));
        }
        answer
    }

    /// The qemu command line of [`Boot::start_guest`], its serial log and
    /// the SSH and HTTPS ports.
    fn command(
        dir: &Path,
        disk: &Path,
        extra: &[&Path],
        guest: Guest,
    ) -> (Command, PathBuf, u16, u16) {
        let vars = dir.join("vars.fd");
        fs::copy(OVMF_VARS, &vars).expect("OVMF vars (package ovmf)");
        let serial = dir.join("serial.log");
        let _ = fs::remove_file(&serial);
        let [ssh_port, https_port] = crate::free_ports::<2>();
        let mut cmd = Command::new("qemu-system-x86_64");
        cmd.args(["-machine", "q35", "-accel", "tcg", "-smp", "2"])
            .args(["-m", &guest.memory_mib.to_string(), "-cpu", guest.cpu])
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
        cmd.arg("-netdev")
            .arg(format!(
                "user,id=net0,restrict=on,hostfwd=tcp:127.0.0.1:{ssh_port}-:22,\
                 hostfwd=tcp:127.0.0.1:{https_port}-:443"
            ))
            .args(["-device", "virtio-net-pci,netdev=net0"]);
        cmd.arg("-serial")
            .arg(format!("file:{}", serial.display()))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        (cmd, serial, ssh_port, https_port)
    }

    /// Runs `command`, a VM that writes its console to `serial`.
    fn spawn(mut command: Command, serial: PathBuf, ssh_port: u16, https_port: u16) -> Boot {
        let child = command
            .spawn()
            .expect("qemu-system-x86_64 (package qemu-system-x86)");
        Boot {
            child,
            command,
            restarts_left: EMULATOR_FAULT_RESTARTS,
            serial,
            ssh_port,
            https_port,
            monitor: None,
        }
    }

    pub fn log(&self) -> String {
        fs::read(&self.serial)
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default()
    }

    /// The serial log cut for a failure message: the kernel's oops (from
    /// the first "BUG:", "Oops" or fault line to the panic), then the last
    /// 60 lines. A whole log is thousands of lines, and CI keeps only part
    /// of what a failing test prints.
    pub fn excerpt(&self) -> String {
        let log = self.log();
        let lines: Vec<&str> = log.lines().collect();
        let mut out = String::new();
        if let Some(panic) = lines.iter().position(|l| l.contains(KERNEL_PANIC)) {
            let oops = lines[..panic]
                .iter()
                .position(|l| {
                    ["BUG:", "Oops", "general protection", "RIP:"]
                        .iter()
                        .any(|m| l.contains(m))
                })
                .unwrap_or(panic.saturating_sub(40));
            out.push_str("--- kernel oops ---\n");
            for l in &lines[oops..=panic] {
                out.push_str(l);
                out.push('\n');
            }
        }
        out.push_str("--- last 60 lines of the serial log ---\n");
        for l in &lines[lines.len().saturating_sub(60)..] {
            out.push_str(l);
            out.push('\n');
        }
        out
    }

    /// Whether the guest's kernel panicked before the initramfs began to
    /// mount the root: nothing of the image's own had run, so the fault is
    /// the emulator's (seen once in CI under TCG: "Fatal exception in
    /// interrupt" from an int3 in run_timer_softirq, the same image booting
    /// on rerun).
    fn emulator_fault(&self) -> bool {
        let log = self.log();
        match log.find(KERNEL_PANIC) {
            Some(at) => !log[..at].contains(ROOT_MOUNT_BEGINS),
            None => false,
        }
    }

    /// Starts the same VM again after an emulator fault, keeping the
    /// faulted log beside the new one and printing its oops.
    fn restart(&mut self) {
        eprintln!(
            "qemu: the guest kernel panicked before the root was mounted \
             (an emulator fault, not the image's); booting again\n{}",
            self.excerpt()
        );
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = fs::rename(&self.serial, self.serial.with_extension("faulted.log"));
        self.restarts_left -= 1;
        self.child = self
            .command
            .spawn()
            .expect("qemu-system-x86_64 (package qemu-system-x86)");
    }

    /// Waits until the serial log holds one of `markers` (returns it), the
    /// VM stops, or `limit` passes. A VM whose kernel panicked before the
    /// image's own code ran is started again, up to
    /// [`EMULATOR_FAULT_RESTARTS`] times (its time counts).
    pub fn wait_for(&mut self, markers: &[&str], limit: Duration) -> Option<String> {
        let start = Instant::now();
        let seen = |log: &str| {
            markers
                .iter()
                .find(|m| log.contains(*m))
                .map(|m| m.to_string())
        };
        while start.elapsed() < limit {
            let stopped = matches!(self.child.try_wait(), Ok(Some(_)));
            if let Some(m) = seen(&self.log()) {
                return Some(m);
            }
            // A panicked kernel halts without exiting (no panic= on the
            // image's command line): look for the fault while it runs.
            if self.restarts_left > 0 && self.emulator_fault() {
                self.restart();
                continue;
            }
            if stopped {
                return None;
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

impl Boot {
    /// Waits up to `limit` for the VM to stop by itself (a reboot under
    /// `-no-reboot`, a power-off); whether it did.
    pub fn wait_stopped(&mut self, limit: Duration) -> bool {
        let start = Instant::now();
        while start.elapsed() < limit {
            if matches!(self.child.try_wait(), Ok(Some(_))) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(500));
        }
        false
    }
}

/// What the human monitor prints up to its next `(qemu) ` prompt.
fn monitor_reply(monitor: &mut UnixStream) -> String {
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    while !out.ends_with(b"(qemu) ") {
        match monitor.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => out.extend_from_slice(&buf[..n]),
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

impl Drop for Boot {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A stand-in VM: a shell that writes `first` to the console on its
    /// first run and `then` on every later one.
    /// Like a panicked kernel, it does not exit: it sleeps on.
    fn vm(dir: &Path, first: &str, then: &str) -> Boot {
        let serial = dir.join("serial.log");
        let mut cmd = Command::new("sh");
        cmd.arg("-c")
            .arg(
                "if [ -e \"$1/ran\" ]; then printf '%s\\n' \"$3\"; \
                 else touch \"$1/ran\"; printf '%s\\n' \"$2\"; fi > \"$1/serial.log\"; \
                 exec sleep 60",
            )
            .args(["sh", dir.to_str().unwrap(), first, then]);
        Boot::spawn(cmd, serial, 0, 0)
    }

    #[test]
    fn a_panic_before_the_root_is_mounted_boots_once_more() {
        let tmp = tempfile::tempdir().unwrap();
        let mut boot = vm(
            tmp.path(),
            "[ 3.9] Oops: 0000\n[ 3.98] Kernel panic - not syncing: Fatal exception in interrupt",
            "Begin: Mounting root file system\nOWUI-AGENT READY",
        );
        let seen = boot.wait_for(&["OWUI-AGENT READY"], Duration::from_secs(20));
        assert_eq!(seen.as_deref(), Some("OWUI-AGENT READY"));
        assert!(tmp.path().join("serial.faulted.log").exists());
    }

    #[test]
    fn a_panic_after_the_root_is_mounted_fails_the_boot() {
        let tmp = tempfile::tempdir().unwrap();
        let mut boot = vm(
            tmp.path(),
            "Begin: Mounting root file system\nKernel panic - not syncing: VFS",
            "OWUI-AGENT READY",
        );
        let seen = boot.wait_for(&["OWUI-AGENT READY"], Duration::from_secs(4));
        assert_eq!(seen, None);
        assert!(boot.excerpt().contains("--- kernel oops ---"));
    }

    #[test]
    fn repeated_emulator_faults_fail_the_boot() {
        let tmp = tempfile::tempdir().unwrap();
        let panic = "Kernel panic - not syncing: Fatal exception in interrupt";
        let mut boot = vm(tmp.path(), panic, panic);
        let seen = boot.wait_for(&["OWUI-AGENT READY"], Duration::from_secs(4));
        assert_eq!(seen, None);
        assert_eq!(boot.restarts_left, 0);
    }
}
