//! The GPT disk: systemd-repart lays the finished partition images out
//! (`CopyBlocks=`), with every UUID given so the table is reproducible; a
//! small GPT reader finds them again for digests and `verify-image`.

use std::fs::{self, File};
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use owui_bundle::command::Cmd;
use owui_bundle::error::IoContext;
use owui_bundle::{Error, Result};

pub struct PartitionImage {
    /// systemd-repart's type name (`esp`, `root-x86-64`, …).
    pub repart_type: &'static str,
    pub label: &'static str,
    pub uuid: String,
    pub file: PathBuf,
    /// GPT's read-only attribute (bit 60): the verity root and its hash tree.
    pub read_only: bool,
}

/// GPT partition attribute bit 60: the partition is mounted read-only.
pub const GPT_READ_ONLY: u64 = 1 << 60;

/// Partition labels: the units in the image mount by these.
pub const ESP_LABEL: &str = "owui-esp";
pub const ROOT_LABEL: &str = "owui-root";
pub const VERITY_LABEL: &str = "owui-root-verity";
/// The data partition: /var, with the role's content pre-filled under
/// lib/owui; last on the disk, so first boot can grow it to the disk's end.
pub const DATA_LABEL: &str = "owui-data";
/// The data partition's GPT type: our own, so that the image's repart.d
/// definition matches exactly this partition and nothing else (no
/// Discoverable Partitions Specification type fits: `var` wants a UUID
/// derived from the machine ID, which a role image cannot know).
pub const DATA_TYPE: &str = "8a5f0b7c-3e2d-4c61-9b7e-6f1d2c3b4a59";

/// Writes `disk` from the partition images, in order.
pub fn assemble(
    parts: &[PartitionImage],
    disk_uuid: &str,
    scratch: &Path,
    disk: &Path,
) -> Result<()> {
    let defs = scratch.join("repart.d");
    if defs.exists() {
        fs::remove_dir_all(&defs).at("removing", &defs)?;
    }
    fs::create_dir_all(&defs).at("creating", &defs)?;
    for (i, p) in parts.iter().enumerate() {
        let conf = defs.join(format!("{:02}-{}.conf", (i + 1) * 10, p.label));
        let text = format!(
            "[Partition]\nType={}\nLabel={}\nUUID={}\nCopyBlocks={}\nReadOnly={}\n",
            p.repart_type,
            p.label,
            p.uuid,
            p.file.display(),
            if p.read_only { "yes" } else { "no" }
        );
        fs::write(&conf, text).at("writing", &conf)?;
    }
    if disk.exists() {
        fs::remove_file(disk).at("replacing", disk)?;
    }
    Cmd::new("systemd-repart")
        .arg("--empty=create")
        .arg("--size=auto")
        .arg("--dry-run=no")
        .arg("--no-pager")
        .arg(format!("--definitions={}", defs.display()))
        .arg(format!("--seed={disk_uuid}"))
        .arg(disk)
        .output()?;
    fs::remove_dir_all(&defs).at("removing", &defs)
}

/// One GPT entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GptPartition {
    pub label: String,
    pub type_guid: String,
    pub uuid: String,
    /// Bytes from the start of the disk.
    pub offset: u64,
    pub size: u64,
    /// The entry's attribute bits ([`GPT_READ_ONLY`], …).
    pub attributes: u64,
}

const SECTOR: u64 = 512;

/// Mixed-endian GUID bytes as the usual string.
fn guid(b: &[u8]) -> String {
    format!(
        "{:02x}{:02x}{:02x}{:02x}-{:02x}{:02x}-{:02x}{:02x}-{:02x}{:02x}-{:02x}{:02x}{:02x}{:02x}{:02x}{:02x}",
        b[3], b[2], b[1], b[0], b[5], b[4], b[7], b[6], b[8], b[9], b[10], b[11], b[12], b[13], b[14], b[15]
    )
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    let mut x = [0u8; 8];
    x.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(x)
}

/// Reads the primary GPT of a disk image; errors name the image and the
/// byte offset that is wrong.
pub fn read_gpt(disk: &Path) -> Result<Vec<GptPartition>> {
    let bad = |at: u64, detail: &str| {
        Error::invalid(
            format!("{} at byte {at}", disk.display()),
            detail.to_string(),
        )
    };
    let mut f = File::open(disk).at("opening", disk)?;
    let disk_len = f.metadata().at("reading", disk)?.len();
    let mut header = [0u8; 92];
    f.seek(SeekFrom::Start(SECTOR)).at("reading", disk)?;
    f.read_exact(&mut header)
        .map_err(|_| bad(SECTOR, "too short for a GPT header"))?;
    if &header[0..8] != b"EFI PART" {
        return Err(bad(
            SECTOR,
            "no GPT header (signature \"EFI PART\" missing)",
        ));
    }
    let entries_lba = u64_at(&header, 72);
    let count = u32_at(&header, 80);
    let entry_len = u32_at(&header, 84) as usize;
    if !(128..=4096).contains(&entry_len) || count > 1024 {
        return Err(bad(
            SECTOR + 80,
            "implausible partition entry count or size",
        ));
    }
    let table_at = entries_lba
        .checked_mul(SECTOR)
        .filter(|at| *at < disk_len)
        .ok_or_else(|| bad(SECTOR + 72, "partition table starts past the end"))?;
    let mut table = vec![0u8; count as usize * entry_len];
    f.seek(SeekFrom::Start(table_at)).at("reading", disk)?;
    f.read_exact(&mut table)
        .map_err(|_| bad(table_at, "partition table runs past the end"))?;
    let mut out = Vec::new();
    for (i, e) in table.chunks(entry_len).enumerate() {
        if e[0..16].iter().all(|b| *b == 0) {
            continue;
        }
        let first = u64_at(e, 32);
        let last = u64_at(e, 40);
        // table_at < disk_len and the entry was read from it: no overflow.
        let at = table_at + (i * entry_len) as u64;
        // Checked: a crafted `last` near u64::MAX must not wrap into range.
        let end = last.checked_add(1).and_then(|n| n.checked_mul(SECTOR));
        if last < first || end.is_none_or(|end| end > disk_len) {
            return Err(bad(at + 32, "partition extends past the end of the image"));
        }
        let name: Vec<u16> = e[56..128]
            .chunks(2)
            .map(|c| u16::from_le_bytes([c[0], c[1]]))
            .take_while(|c| *c != 0)
            .collect();
        out.push(GptPartition {
            label: String::from_utf16_lossy(&name),
            type_guid: guid(&e[0..16]),
            uuid: guid(&e[16..32]),
            offset: first * SECTOR,
            size: (last - first + 1) * SECTOR,
            attributes: u64_at(e, 48),
        });
    }
    Ok(out)
}

/// Copies one partition out of the disk into `dest`.
pub fn extract(disk: &Path, part: &GptPartition, dest: &Path) -> Result<()> {
    let mut src = File::open(disk).at("opening", disk)?;
    src.seek(SeekFrom::Start(part.offset)).at("reading", disk)?;
    let mut out = File::create(dest).at("creating", dest)?;
    let copied = std::io::copy(&mut src.take(part.size), &mut out).at("copying to", dest)?;
    if copied != part.size {
        return Err(Error::invalid(
            disk.display().to_string(),
            format!("partition {} is truncated", part.label),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A partition of 1 MiB of sevens, its image in `dir`.
    fn sevens(
        dir: &Path,
        repart_type: &'static str,
        label: &'static str,
        uuid: &str,
        read_only: bool,
    ) -> PartitionImage {
        let file = dir.join(label);
        fs::write(&file, vec![7u8; 1 << 20]).unwrap();
        PartitionImage {
            repart_type,
            label,
            uuid: uuid.into(),
            file,
            read_only,
        }
    }

    const DISK_UUID: &str = "00000000-0000-4000-8000-000000000001";

    /// systemd-repart lays out the partitions with the UUIDs and read-only
    /// attributes given, and the GPT reader sees them.
    #[test]
    fn assembled_partitions_carry_their_uuids_and_read_only_attribute() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let parts = [
            sevens(
                d,
                "root-x86-64",
                ROOT_LABEL,
                "e1ca6ba1-8c24-7b7a-7677-4a01a4af1f8f",
                true,
            ),
            sevens(
                d,
                DATA_TYPE,
                DATA_LABEL,
                "11111111-2222-4333-8444-555555555555",
                false,
            ),
        ];
        let disk = d.join("disk.raw");
        assemble(&parts, DISK_UUID, d, &disk).unwrap();
        let gpt = read_gpt(&disk).unwrap();
        assert_eq!(gpt.len(), 2);
        assert_eq!(gpt[0].uuid, parts[0].uuid);
        assert_eq!(gpt[0].attributes & GPT_READ_ONLY, GPT_READ_ONLY);
        assert_eq!(gpt[1].uuid, parts[1].uuid);
        assert_eq!(gpt[1].attributes & GPT_READ_ONLY, 0);
    }

    /// The data partition's definition the image carries, run by
    /// systemd-repart on a disk laid out the builder's way (the data
    /// partition last) and 64 MiB bigger: asking for more than the disk
    /// holds is refused, leaving the table as it was; otherwise the data
    /// partition grows to the disk's end.
    #[test]
    fn the_data_definition_grows_the_last_partition_to_the_disks_end() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let parts = [
            sevens(
                d,
                "esp",
                ESP_LABEL,
                "11111111-2222-4333-8444-555555555551",
                false,
            ),
            sevens(
                d,
                DATA_TYPE,
                DATA_LABEL,
                "11111111-2222-4333-8444-555555555552",
                false,
            ),
        ];
        let disk = d.join("disk.raw");
        assemble(&parts, DISK_UUID, d, &disk).unwrap();
        let built = read_gpt(&disk).unwrap();
        let grow = |min_mib: u64| {
            let defs = d.join(format!("defs-{min_mib}"));
            fs::create_dir_all(&defs).unwrap();
            let text = super::super::rootfs::data_definition(min_mib);
            fs::write(defs.join("50-owui-data.conf"), text).unwrap();
            std::process::Command::new("systemd-repart")
                .arg("--dry-run=no")
                .arg("--no-pager")
                .arg(format!("--definitions={}", defs.display()))
                .arg(&disk)
                .output()
                .unwrap()
        };
        let f = fs::OpenOptions::new().write(true).open(&disk).unwrap();
        let len = f.metadata().unwrap().len() + (64 << 20);
        f.set_len(len).unwrap();
        drop(f);

        let refused = grow(1024);
        assert!(!refused.status.success(), "{refused:?}");
        assert_eq!(read_gpt(&disk).unwrap(), built);

        let grown = grow(2);
        assert!(grown.status.success(), "{grown:?}");
        let gpt = read_gpt(&disk).unwrap();
        assert_eq!(gpt[0], built[0]);
        let data = &gpt[1];
        assert_eq!((&data.uuid, data.offset), (&parts[1].uuid, built[1].offset));
        // Up to the backup GPT (33 sectors), give or take repart's 4 KiB
        // alignment of the end.
        let end = data.offset + data.size;
        assert!(
            end <= len - 33 * 512 && end + 33 * 512 + 4096 > len,
            "ends at {end} of {len}"
        );
    }
}
