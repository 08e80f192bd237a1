//! `owui-agent first-boot`: the gate every boot passes before the node's
//! services start (owui-seed.service). It checks the node's preconditions:
//! its seed (signed by a key the image trusts, for this image's role), a
//! disk that leaves the data partition the image's least size, and a clock
//! not behind the image's build. When all hold it opens the gate
//! ([`GATE_OPEN`], the condition of every unit that needs the seed, the
//! data partition or the secrets). When one does not, the node waits: one
//! message on the console, the same text above the login prompt
//! (/run/issue.d) and in `owui-agent status`, and no failed unit. A seed
//! medium inserted later runs the gate again (the image's udev rule), and a
//! gate that opens then starts the rest of the boot.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::SystemTime;

use owui_bundle::error::IoContext;
use owui_bundle::fsutil::write_atomic;
use owui_bundle::{Error, Result};
use serde::{Deserialize, Serialize};

use crate::health::space::{self, human};
use crate::layout::Root;
use crate::seed_cmd::{self, ESP_SEED, IMAGE_INFO, MEDIUM_LABEL};

/// Exists once the gate opened: `ConditionPathExists=` of every unit that
/// needs the seed, the data partition or the secrets.
pub const GATE_OPEN: &str = "/run/owui/gate-open";
/// What the gate found last, for `status`.
const GATE_STATE: &str = "/run/owui/gate.json";
/// Exists while the node waits; the image's udev rule runs the gate again
/// when a seed medium appears then (its `TEST==` key).
const WAITING: &str = "/run/owui/waiting";
/// agetty shows the files in /run/issue.d above the login prompt.
const ISSUE: &str = "/run/issue.d/50-owui-gate.issue";
/// The data partition, by the GPT label the builder gives it.
const DATA_PARTITION: &str = "/dev/disk/by-partlabel/owui-data";
/// The backup GPT at the disk's end: its header and 32 sectors of entries.
const BACKUP_GPT_BYTES: u64 = 33 * 512;
/// systemd-repart's default alignment of partition ends.
const GRAIN: u64 = 4096;
/// The first line of a waiting node's message.
const HEADLINE: &str = "owui-appliance: this node is waiting; its services have not started.";
/// Console lines are wrapped to this width (an 80-column screen).
const WIDTH: usize = 76;

/// What the gate checks before the node's services start.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Precondition {
    Seed,
    Disk,
    Clock,
}

/// A precondition that does not hold: what is wrong, what the gate saw,
/// what to do.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Problem {
    pub precondition: Precondition,
    pub message: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "lowercase")]
pub enum Gate {
    /// Every precondition holds; the node's services start.
    Open { node: String, role: String },
    /// The node waits for the fix; nothing that needs it has started.
    Waiting { problems: Vec<Problem> },
}

/// The text a technician reads on the console, above the login prompt and
/// in `status`: the headline, then each problem, wrapped for the screen.
pub fn message(problems: &[Problem]) -> String {
    let mut text = String::from(HEADLINE);
    for p in problems {
        text.push_str("\n\n");
        text.push_str(&wrap(&p.message));
    }
    text.push_str("\n\n");
    text.push_str(&wrap(
        "`owui-agent status` shows this again; docs/images.md (\"Writing and first boot\") says more.",
    ));
    text
}

/// `text` with its words on lines of at most [`WIDTH`] columns.
fn wrap(text: &str) -> String {
    let mut out = String::new();
    let mut line = 0;
    for word in text.split_whitespace() {
        if line > 0 && line + 1 + word.chars().count() > WIDTH {
            out.push('\n');
            line = 0;
        } else if line > 0 {
            out.push(' ');
            line += 1;
        }
        out.push_str(word);
        line += word.chars().count();
    }
    out
}

/// Runs the gate: checks every precondition, records the outcome, and when
/// the node was waiting and may now start, starts the rest of the boot.
/// An open gate stays open for the rest of the boot.
pub fn gate(root: &Root) -> Result<Gate> {
    if let Some(open @ Gate::Open { .. }) = recorded(root) {
        if root.host(Path::new(GATE_OPEN))?.exists() {
            return Ok(open);
        }
    }
    let was_waiting = root.host(Path::new(WAITING))?.exists();
    let role = seed_cmd::image_role(root)?.unwrap_or_else(|| "role".into());
    let mut problems = Vec::new();
    let from = [PathBuf::from(ESP_SEED)];
    let seed = match seed_cmd::import_found(root, &from, true, true, false) {
        Ok(Some((_, seed))) => Some(seed),
        Ok(None) => {
            problems.push(Problem {
                precondition: Precondition::Seed,
                message: format!(
                    "No seed found. Looked for a FAT volume labelled {MEDIUM_LABEL} and \
                     {ESP_SEED}. Insert this node's seed stick (made with \
                     `owui-builder seed create`, docs/seeds.md); this node continues by \
                     itself when it appears."
                ),
            });
            None
        }
        // Invalid, untrusted or refused: the seed is wrong, not the node.
        Err(e) if matches!(e.exit_code(), 3..=5) => {
            problems.push(Problem {
                precondition: Precondition::Seed,
                message: format!(
                    "The seed was refused: {e}. Insert a stick with this node's seed instead; \
                     this node continues by itself when it appears."
                ),
            });
            None
        }
        Err(e) => return Err(e),
    };
    let lab = seed.as_ref().and_then(|s| s.lab_data_min_mib);
    problems.extend(check_disk(root, lab, &role)?);
    problems.extend(check_clock(root, SystemTime::now())?);
    let gate = match (seed, problems.is_empty()) {
        (Some(seed), true) => Gate::Open {
            node: seed.node.to_string(),
            role: seed.role.as_str().to_string(),
        },
        _ => Gate::Waiting { problems },
    };
    record(root, &gate)?;
    if was_waiting && matches!(gate, Gate::Open { .. }) && root.path() == Path::new("/") {
        start_the_rest()?;
    }
    Ok(gate)
}

/// The rest of the boot, now that the gate is open: starting
/// multi-user.target again starts the units its conditions held back (not
/// default.target: started from here, its alias graphical.target starts
/// none of them; tried under systemd-nspawn).
fn start_the_rest() -> Result<()> {
    let status = Command::new("systemctl")
        .args(["--no-block", "start", "multi-user.target"])
        .status()
        .map_err(|e| Error::tool("systemctl", e.to_string()))?;
    if !status.success() {
        return Err(Error::tool(
            "systemctl",
            format!("start multi-user.target: {status}"),
        ));
    }
    Ok(())
}

/// The data partition's size now, and what growing it to the disk's end
/// gives (systemd-repart's rule: up to the backup GPT, on its grain).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct DataRoom {
    partition: u64,
    room: u64,
}

/// Reads the data partition and its disk from sysfs.
fn data_room(root: &Root) -> Result<DataRoom> {
    let link = root.resolve_entry(Path::new(DATA_PARTITION))?;
    let target = fs::read_link(&link).at("reading the link", &link)?;
    let name = target
        .file_name()
        .ok_or_else(|| Error::invalid(link.display().to_string(), "names no device"))?;
    let sys = root.host(&Path::new("/sys/class/block").join(name))?;
    let part = fs::canonicalize(&sys).at("resolving", &sys)?;
    let disk = part
        .parent()
        .ok_or_else(|| Error::invalid(part.display().to_string(), "has no disk above it"))?;
    let bytes = |path: PathBuf| -> Result<u64> {
        let text = fs::read_to_string(&path).at("reading", &path)?;
        let sectors = text
            .trim()
            .parse::<u64>()
            .map_err(|e| Error::invalid(path.display().to_string(), e.to_string()))?;
        Ok(sectors.saturating_mul(512))
    };
    let start = bytes(part.join("start"))?;
    let partition = bytes(part.join("size"))?;
    let end = bytes(disk.join("size"))?.saturating_sub(BACKUP_GPT_BYTES);
    let room = end.saturating_sub(start) / GRAIN * GRAIN;
    Ok(DataRoom {
        partition,
        room: room.max(partition),
    })
}

/// Whether the disk leaves the data partition the least size in force
/// (the image's definition, or the lab one the gate wrote): systemd-repart
/// runs only then (its `ExecCondition=`), so a disk too small is never
/// repartitioned and repart never fails for it.
pub fn disk_fits(root: &Root) -> Result<bool> {
    let Some(min) = space::minimum(&space::data_definition(root)?) else {
        return Ok(true); // not a role image
    };
    Ok(data_room(root)?.room >= min.bytes)
}

/// The disk precondition. A lab seed's lower minimum is written where
/// systemd-repart and `status` read it; when it lets a disk pass that the
/// image's minimum held back at boot, the data partition is grown now.
fn check_disk(root: &Root, lab_mib: Option<u64>, role: &str) -> Result<Option<Problem>> {
    let image_def = root.host(Path::new(space::DATA_DEFINITION))?;
    let Some(image_min) = space::minimum(&image_def) else {
        return Ok(None); // not a role image
    };
    let lab = lab_mib
        .map(|mib| mib.saturating_mul(1 << 20))
        .filter(|lab| *lab < image_min.bytes);
    let lab_def = root.host(Path::new(space::DATA_DEFINITION_LAB))?;
    let source = match lab {
        Some(bytes) => {
            let text = fs::read_to_string(&image_def).at("reading", &image_def)?;
            let lowered = lab_definition(&text, bytes);
            if let Some(dir) = lab_def.parent() {
                fs::create_dir_all(dir).at("creating", dir)?;
            }
            write_atomic(&lab_def, lowered.as_bytes(), 0o644)?;
            "lowered by the seed's lab_data_min_mib".to_string()
        }
        None => {
            let _ = fs::remove_file(&lab_def);
            format!("partitions.data; {}", space::DATA_DEFINITION)
        }
    };
    let need = lab.unwrap_or(image_min.bytes);
    let disk = data_room(root)?;
    if disk.room < need {
        return Ok(Some(Problem {
            precondition: Precondition::Disk,
            message: format!(
                "This disk is too small: it leaves {} for the data partition, and this {role} \
                 image needs at least {} there ({source}). Nothing was repartitioned. Write the \
                 image to a disk at least {} larger and boot from that.",
                human(disk.room),
                human(need),
                human(need - disk.room)
            ),
        }));
    }
    // systemd-repart skipped the disk at boot (below the image's minimum)
    // and the lab minimum lets it through: grow the data partition now.
    if disk.room < image_min.bytes && disk.partition < disk.room && root.path() == Path::new("/") {
        grow_data_partition()?;
    }
    Ok(None)
}

/// The image's data partition definition with `SizeMinBytes=` set to
/// `bytes`.
fn lab_definition(image: &str, bytes: u64) -> String {
    let mut out = String::from("# Written by `owui-agent first-boot gate` from a lab seed.\n");
    for line in image.lines() {
        if line.trim_start().starts_with("SizeMinBytes") {
            out.push_str(&format!("SizeMinBytes={bytes}\n"));
        } else {
            out.push_str(line);
            out.push('\n');
        }
    }
    out
}

/// systemd-repart with the lab definition, then the mounted filesystem
/// grown online to the partition (what systemd-growfs@var does at boot).
fn grow_data_partition() -> Result<()> {
    for (program, args) in [
        ("systemd-repart", &["--dry-run=no"][..]),
        ("/usr/lib/systemd/systemd-growfs", &["/var"][..]),
    ] {
        let status = Command::new(program)
            .args(args)
            .status()
            .map_err(|e| Error::tool(program, e.to_string()))?;
        if !status.success() {
            return Err(Error::tool(program, format!("{status}")));
        }
    }
    Ok(())
}

/// The clock precondition: not behind the image's build (the image's files
/// carry its build time), or the certificates first boot makes would not
/// be valid yet.
fn check_clock(root: &Root, now: SystemTime) -> Result<Option<Problem>> {
    let info = root.host(Path::new(IMAGE_INFO))?;
    let Ok(built) = fs::metadata(&info).and_then(|m| m.modified()) else {
        return Ok(None); // not a role image
    };
    if now >= built {
        return Ok(None);
    }
    Ok(Some(Problem {
        precondition: Precondition::Clock,
        message: format!(
            "The clock says {}, before this image was built ({}), so certificates made now \
             would not be valid yet. Set the firmware (BIOS/UEFI) clock to the current UTC \
             time, then reboot.",
            humantime::format_rfc3339_seconds(now),
            humantime::format_rfc3339_seconds(built)
        ),
    }))
}

/// Writes the outcome where units, udev, agetty and `status` look.
fn record(root: &Root, gate: &Gate) -> Result<()> {
    let host = |p: &str| root.host(Path::new(p));
    let state = host(GATE_STATE)?;
    if let Some(dir) = state.parent() {
        fs::create_dir_all(dir).at("creating", dir)?;
    }
    let json = serde_json::to_vec_pretty(gate)
        .map_err(|e| Error::internal("serialising the gate", e.to_string()))?;
    write_atomic(&state, &json, 0o644)?;
    match gate {
        Gate::Open { .. } => {
            write_atomic(&host(GATE_OPEN)?, b"", 0o644)?;
            for gone in [WAITING, ISSUE] {
                let path = host(gone)?;
                match fs::remove_file(&path) {
                    Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                        Err::<(), _>(e).at("removing", &path)?
                    }
                    _ => {}
                }
            }
        }
        Gate::Waiting { problems } => {
            let issue = host(ISSUE)?;
            if let Some(dir) = issue.parent() {
                fs::create_dir_all(dir).at("creating", dir)?;
            }
            // agetty reads backslashes as escapes: the text has none
            // to keep, so they are doubled.
            let text = format!("{}\n\n", message(problems).replace('\\', "\\\\"));
            write_atomic(&issue, text.as_bytes(), 0o644)?;
            write_atomic(&host(WAITING)?, b"", 0o644)?;
        }
    }
    Ok(())
}

/// The gate's last outcome on this boot; None before it ran (or off a
/// node).
pub fn recorded(root: &Root) -> Option<Gate> {
    let path = root.host(Path::new(GATE_STATE)).ok()?;
    let bytes = fs::read(path).ok()?;
    serde_json::from_slice(&bytes).ok()
}

pub fn print(gate: &Gate) {
    match gate {
        Gate::Open { node, role } => println!(
            "first-boot gate open: node {node}, role {role}; seed, disk and clock checked, \
             the node's services start"
        ),
        Gate::Waiting { problems } => println!("{}", message(problems)),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use owui_bundle::sign::SecretKey;
    use std::os::unix::fs::symlink;

    const MIB: u64 = 1 << 20;

    /// An app image's root under a temporary directory: its trust store
    /// holds `key`, its data partition (vda4, starting at 1 GiB, `part_mib`
    /// large) is on a disk of `disk_mib`, and its definition asks for
    /// 256 MiB.
    fn node(disk_mib: u64, part_mib: u64) -> (tempfile::TempDir, Root, SecretKey) {
        let dir = tempfile::tempdir().unwrap();
        let root = Root::new(dir.path());
        let put = |path: &str, text: &str| {
            let path = dir.path().join(path);
            fs::create_dir_all(path.parent().unwrap()).unwrap();
            fs::write(path, text).unwrap();
        };
        put(
            "usr/lib/owui/image.json",
            r#"{"role": "app", "version": "0.1.0"}"#,
        );
        put(
            "usr/lib/repart.d/50-owui-data.conf",
            "[Partition]\nType=8a5f0b7c-3e2d-4c61-9b7e-6f1d2c3b4a59\nLabel=owui-data\nSizeMinBytes=256M\n",
        );
        let key = SecretKey::generate();
        let public = key.public();
        put(
            &format!("etc/owui/trust/{}.pub", public.id),
            &public.to_file_string(),
        );
        let sectors = |mib: u64| (mib * MIB / 512).to_string();
        put("sys/block/vda/size", &sectors(disk_mib));
        put("sys/block/vda/vda4/start", &sectors(1024));
        put("sys/block/vda/vda4/size", &sectors(part_mib));
        fs::create_dir_all(dir.path().join("sys/class/block")).unwrap();
        symlink(
            "../../block/vda/vda4",
            dir.path().join("sys/class/block/vda4"),
        )
        .unwrap();
        fs::create_dir_all(dir.path().join("dev/disk/by-partlabel")).unwrap();
        symlink("../../vda4", dir.path().join(&DATA_PARTITION[1..])).unwrap();
        (dir, root, key)
    }

    fn seed_on_esp(root: &Root, text: &str, key: &SecretKey) {
        let esp = root.host(Path::new(ESP_SEED)).unwrap();
        fs::create_dir_all(esp.parent().unwrap()).unwrap();
        fs::write(&esp, text).unwrap();
        fs::write(
            format!("{}.minisig", esp.display()),
            key.sign(text.as_bytes(), "owui seed"),
        )
        .unwrap();
    }

    fn exists(root: &Root, path: &str) -> bool {
        root.host(Path::new(path)).unwrap().exists()
    }

    fn problems(gate: &Gate) -> &[Problem] {
        match gate {
            Gate::Waiting { problems } => problems,
            Gate::Open { .. } => panic!("open: {gate:?}"),
        }
    }

    #[test]
    fn no_seed_waits_with_one_message_above_the_login_prompt_and_in_status() {
        let (_dir, root, key) = node(4096, 300);
        let gate = gate(&root).unwrap();
        let p = problems(&gate);
        assert_eq!(p.len(), 1, "{p:?}");
        assert_eq!(p[0].precondition, Precondition::Seed);
        assert!(
            p[0].message.starts_with(
                "No seed found. Looked for a FAT volume labelled OWUI-SEED and /efi/owui/seed.toml."
            ),
            "{}",
            p[0].message
        );
        assert!(!exists(&root, GATE_OPEN));
        assert!(exists(&root, WAITING));
        let issue = fs::read_to_string(root.host(Path::new(ISSUE)).unwrap()).unwrap();
        assert_eq!(issue, format!("{}\n\n", message(p)));
        assert!(message(p).lines().all(|l| l.chars().count() <= WIDTH));
        assert_eq!(recorded(&root), Some(gate.clone()));

        // The seed arrives: the gate opens, the waiting text goes.
        seed_on_esp(&root, "node = \"n1\"\nrole = \"app\"\n", &key);
        let open = super::gate(&root).unwrap();
        assert_eq!(
            open,
            Gate::Open {
                node: "n1".into(),
                role: "app".into()
            }
        );
        assert!(exists(&root, GATE_OPEN) && exists(&root, "/run/owui/seed.toml"));
        assert!(!exists(&root, WAITING) && !exists(&root, ISSUE));
        // An open gate stays open for the boot.
        fs::remove_file(root.host(Path::new(ESP_SEED)).unwrap()).unwrap();
        assert_eq!(super::gate(&root).unwrap(), open);
    }

    #[test]
    fn a_small_disk_and_another_roles_seed_are_named_with_both_sizes_and_roles() {
        let (_dir, root, key) = node(1024 + 100, 64);
        seed_on_esp(&root, "node = \"g2\"\nrole = \"gpu\"\n", &key);
        let gate = gate(&root).unwrap();
        let p = problems(&gate);
        assert_eq!(
            p.iter().map(|p| p.precondition).collect::<Vec<_>>(),
            [Precondition::Seed, Precondition::Disk]
        );
        assert!(
            p[0].message
                .contains("is the seed of a gpu node (g2), but this is the app image"),
            "{}",
            p[0].message
        );
        // 100 MiB less the backup GPT, on 4 KiB.
        assert!(
            p[1].message
                .contains("it leaves 100.0 MiB for the data partition")
                && p[1].message.contains("needs at least 256.0 MiB there"),
            "{}",
            p[1].message
        );
        assert!(!exists(&root, "/run/owui/seed.toml") && !exists(&root, GATE_OPEN));
        assert!(!disk_fits(&root).unwrap());
    }

    #[test]
    fn a_lab_seed_lowers_the_minimum_where_repart_and_status_read_it() {
        let lab_seed = "node = \"lab-1\"\nrole = \"app\"\nlab_data_min_mib = 256\n";
        for (room_mib, opens) in [(200, false), (300, true)] {
            let (_dir, root, key) = node(1024 + room_mib, 64);
            let definition = root.host(Path::new(space::DATA_DEFINITION)).unwrap();
            let text = fs::read_to_string(&definition).unwrap();
            fs::write(&definition, text.replace("256M", "512M")).unwrap();
            assert!(!disk_fits(&root).unwrap());
            seed_on_esp(&root, lab_seed, &key);
            let gate = gate(&root).unwrap();
            let lab = root.host(Path::new(space::DATA_DEFINITION_LAB)).unwrap();
            if !opens {
                let message = &problems(&gate)[0].message;
                assert!(
                    message.contains(
                        "needs at least 256.0 MiB there (lowered by the seed's lab_data_min_mib)"
                    ),
                    "{message}"
                );
                continue;
            }
            assert!(matches!(gate, Gate::Open { .. }), "{gate:?}");
            let text = fs::read_to_string(&lab).unwrap();
            assert!(
                text.contains(&format!("SizeMinBytes={}\n", 256 * MIB)),
                "{text}"
            );
            assert!(text.contains("Label=owui-data"), "{text}");
            assert_eq!(space::data_definition(&root).unwrap(), lab);
            assert!(disk_fits(&root).unwrap());
        }
    }

    #[test]
    fn a_clock_behind_the_images_build_waits() {
        let (_dir, root, _key) = node(4096, 300);
        let built = fs::metadata(root.host(Path::new(IMAGE_INFO)).unwrap())
            .unwrap()
            .modified()
            .unwrap();
        let early = built - std::time::Duration::from_secs(86_400 * 400);
        let p = check_clock(&root, early).unwrap().unwrap();
        assert_eq!(p.precondition, Precondition::Clock);
        assert!(
            p.message.contains("before this image was built"),
            "{}",
            p.message
        );
        assert_eq!(check_clock(&root, built).unwrap(), None);
    }
}
