//! The EFI system partition, made without loop mounts: mkfs.vfat on a file,
//! then mtools. systemd-boot is the UEFI loader; it finds the UKI in
//! EFI/Linux by itself (Boot Loader Specification, type #2 entries).

use std::fs;
use std::path::Path;

use owui_bundle::command::Cmd;
use owui_bundle::error::IoContext;
use owui_bundle::Result;

/// `editor no`: with Secure Boot off the stub would take a command line
/// typed at the menu, and a typed `root=` would bypass verity.
const LOADER_CONF: &str = "timeout 0\neditor no\n";

/// The README an operator sees when the stick is mounted on a laptop.
const SEED_README: &str =
    "Put this node's seed here as seed.toml, with its signature seed.toml.minisig\n\
    (owui-builder seed create --node NAME --role ROLE --key KEY --out seed.toml\n\
    writes both). On first boot the node checks the signature, reads the seed,\n\
    sets its hostname and joins its role.\n";

pub struct EspFiles<'a> {
    pub systemd_boot: &'a Path,
    pub uki: &'a Path,
    /// File name under EFI/Linux.
    pub uki_name: &'a str,
}

/// Writes `esp` (a FAT32 image of `size_mib`), deterministic for the same
/// inputs: fixed volume id, `--invariant`, every timestamp at `epoch`.
pub fn make_esp(
    files: &EspFiles<'_>,
    size_mib: u64,
    epoch: u64,
    scratch: &Path,
    esp: &Path,
) -> Result<()> {
    if esp.exists() {
        fs::remove_file(esp).at("replacing", esp)?;
    }
    Cmd::new("mkfs.vfat")
        .env("SOURCE_DATE_EPOCH", epoch.to_string())
        .args([
            "-C",
            "-F",
            "32",
            "--invariant",
            "-i",
            "0a5e0e51",
            "-n",
            "OWUI-ESP",
        ])
        .arg(esp)
        .arg((size_mib * 1024).to_string())
        .output()?;

    let staged = scratch.join("esp-files");
    fs::create_dir_all(&staged).at("creating", &staged)?;
    let loader = staged.join("loader.conf");
    fs::write(&loader, LOADER_CONF).at("writing", &loader)?;
    let readme = staged.join("README.txt");
    fs::write(&readme, SEED_README).at("writing", &readme)?;
    let boot = staged.join("BOOTX64.EFI");
    fs::copy(files.systemd_boot, &boot).at("copying to", &boot)?;
    let uki = staged.join(files.uki_name);
    fs::copy(files.uki, &uki).at("copying to", &uki)?;
    let when = std::time::UNIX_EPOCH + std::time::Duration::from_secs(epoch);
    for f in [&loader, &readme, &boot, &uki] {
        fs::File::options()
            .write(true)
            .open(f)
            .and_then(|h| h.set_modified(when))
            .at("setting the time of", f)?;
    }

    let mtools = |program: &str| {
        Cmd::new(program)
            .env("MTOOLS_SKIP_CHECK", "1")
            .env("SOURCE_DATE_EPOCH", epoch.to_string())
            .arg("-i")
            .arg(esp)
    };
    mtools("mmd")
        .args(["::EFI", "::EFI/BOOT", "::EFI/Linux", "::loader", "::owui"])
        .output()?;
    for (file, dest) in [
        (&boot, "::EFI/BOOT/BOOTX64.EFI".to_string()),
        (&uki, format!("::EFI/Linux/{}", files.uki_name)),
        (&loader, "::loader/loader.conf".to_string()),
        (&readme, "::owui/README.txt".to_string()),
    ] {
        mtools("mcopy").arg("-m").arg(file).arg(dest).output()?;
    }
    fs::remove_dir_all(&staged).at("removing", &staged)
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    /// The README's command is one the builder has, with those options.
    #[test]
    fn the_seed_readme_names_a_real_command() {
        let text = SEED_README.replace('\n', " ");
        let (_, after) = text
            .split_once("owui-builder ")
            .expect("the README says which command writes seeds");
        let words: Vec<&str> = after.split_whitespace().collect();
        let mut cmd = crate::cli::Cli::command();
        let mut i = 0;
        while let Some(sub) = words.get(i).and_then(|w| cmd.find_subcommand(w)) {
            cmd = sub.clone();
            i += 1;
        }
        assert_eq!(cmd.get_name(), "create", "{words:?}");
        for option in words[i..].iter().filter(|w| w.starts_with("--")) {
            let long = option.trim_start_matches("--");
            assert!(
                cmd.get_arguments().any(|a| a.get_long() == Some(long)),
                "{option}"
            );
        }
    }
}
