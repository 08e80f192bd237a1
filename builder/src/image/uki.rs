//! Unified kernel images: systemd's EFI stub with the kernel, initrd,
//! command line and os-release appended as PE sections.
//!
//! Written here rather than with `objcopy` (which stamps the build time into
//! the header and leaves section placement to the caller) or `ukify` (not in
//! Debian 12): appending sections to a PE file is a small, fixed job, and
//! doing it ourselves makes the output a pure function of the inputs.

use owui_bundle::{Error, Result};

fn stub_error(detail: String) -> Error {
    Error::invalid("the EFI stub", detail)
}

/// Sections in the order systemd's `ukify` writes them: `.linux` last, so a
/// kernel of any size never pushes another section around.
pub struct UkiParts<'a> {
    pub osrel: &'a [u8],
    pub cmdline: &'a [u8],
    pub initrd: &'a [u8],
    pub linux: &'a [u8],
}

const SECTION_HEADER_LEN: usize = 40;
/// IMAGE_SCN_CNT_INITIALIZED_DATA | IMAGE_SCN_MEM_READ.
const DATA_READ_ONLY: u32 = 0x0000_0040 | 0x4000_0000;
const PE32_PLUS: u16 = 0x20b;

struct Layout {
    /// Offset of the COFF header (just after "PE\0\0").
    coff: usize,
    optional: usize,
    section_table: usize,
    sections: u16,
    section_alignment: u32,
    file_alignment: u32,
    size_of_headers: u32,
}

fn read_u16(data: &[u8], at: usize) -> Result<u16> {
    data.get(at..at + 2)
        .map(|b| u16::from_le_bytes([b[0], b[1]]))
        .ok_or_else(|| stub_error(format!("truncated at byte {at}")))
}

fn read_u32(data: &[u8], at: usize) -> Result<u32> {
    data.get(at..at + 4)
        .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .ok_or_else(|| stub_error(format!("truncated at byte {at}")))
}

fn write_u32(data: &mut [u8], at: usize, value: u32) {
    data[at..at + 4].copy_from_slice(&value.to_le_bytes());
}

fn align_up(value: u64, alignment: u32) -> u64 {
    let a = u64::from(alignment.max(1));
    value.div_ceil(a) * a
}

fn parse(stub: &[u8]) -> Result<Layout> {
    if stub.get(0..2) != Some(b"MZ") {
        return Err(stub_error("no MZ header".into()));
    }
    let pe = read_u32(stub, 0x3c)? as usize;
    if stub.get(pe..pe + 4) != Some(b"PE\0\0") {
        return Err(stub_error(format!("no PE signature at byte {pe}")));
    }
    let coff = pe + 4;
    let sections = read_u16(stub, coff + 2)?;
    let optional_len = read_u16(stub, coff + 16)? as usize;
    let optional = coff + 20;
    if read_u16(stub, optional)? != PE32_PLUS {
        return Err(stub_error("not a PE32+ (64-bit) image".into()));
    }
    Ok(Layout {
        coff,
        optional,
        section_table: optional + optional_len,
        sections,
        section_alignment: read_u32(stub, optional + 32)?,
        file_alignment: read_u32(stub, optional + 36)?,
        size_of_headers: read_u32(stub, optional + 60)?,
    })
}

/// Returns the stub with the four sections appended.
pub fn assemble(stub: &[u8], parts: &UkiParts<'_>) -> Result<Vec<u8>> {
    let layout = parse(stub)?;
    let new: [(&[u8; 8], &[u8]); 4] = [
        (b".osrel\0\0", parts.osrel),
        (b".cmdline", parts.cmdline),
        (b".initrd\0", parts.initrd),
        (b".linux\0\0", parts.linux),
    ];
    let table_end =
        layout.section_table + (usize::from(layout.sections) + new.len()) * SECTION_HEADER_LEN;
    if table_end > layout.size_of_headers as usize {
        return Err(stub_error(
            "no room in the PE headers for four more section headers".into(),
        ));
    }

    // Where the stub's own sections end, in memory and in the file.
    let mut next_rva = 0u64;
    let mut file_end = stub.len() as u64;
    for i in 0..usize::from(layout.sections) {
        let h = layout.section_table + i * SECTION_HEADER_LEN;
        let vsize = u64::from(read_u32(stub, h + 8)?);
        let rva = u64::from(read_u32(stub, h + 12)?);
        let raw_size = u64::from(read_u32(stub, h + 16)?);
        let raw_ptr = u64::from(read_u32(stub, h + 20)?);
        next_rva = next_rva.max(rva + vsize.max(raw_size));
        file_end = file_end.max(raw_ptr + raw_size);
    }

    let mut out = stub.to_vec();
    out.resize(align_up(file_end, layout.file_alignment) as usize, 0);
    let mut header_at = layout.section_table + usize::from(layout.sections) * SECTION_HEADER_LEN;
    let mut initialized_data = u64::from(read_u32(stub, layout.optional + 8)?);
    for (name, data) in new {
        let rva = align_up(next_rva, layout.section_alignment);
        let raw_ptr = out.len() as u64;
        let raw_size = align_up(data.len() as u64, layout.file_alignment);
        let too_big = |what: &str| stub_error(format!("{what} does not fit a PE image"));
        let rva32 = u32::try_from(rva).map_err(|_| too_big("section address"))?;
        let ptr32 = u32::try_from(raw_ptr).map_err(|_| too_big("file offset"))?;
        let raw32 = u32::try_from(raw_size).map_err(|_| too_big("section size"))?;
        let len32 = u32::try_from(data.len()).map_err(|_| too_big("section size"))?;

        let h = &mut out[header_at..header_at + SECTION_HEADER_LEN];
        h.fill(0);
        h[0..8].copy_from_slice(name);
        write_u32(h, 8, len32);
        write_u32(h, 12, rva32);
        write_u32(h, 16, raw32);
        write_u32(h, 20, ptr32);
        write_u32(h, 36, DATA_READ_ONLY);
        header_at += SECTION_HEADER_LEN;

        out.extend_from_slice(data);
        out.resize((raw_ptr + raw_size) as usize, 0);
        next_rva = rva + data.len() as u64;
        initialized_data += raw_size;
    }

    let sections = layout.sections + new.len() as u16;
    out[layout.coff + 2..layout.coff + 4].copy_from_slice(&sections.to_le_bytes());
    let size_of_image = align_up(next_rva, layout.section_alignment);
    let image32 = u32::try_from(size_of_image)
        .map_err(|_| stub_error("the kernel and initrd do not fit a PE image".into()))?;
    write_u32(&mut out, layout.optional + 56, image32);
    write_u32(
        &mut out,
        layout.optional + 8,
        u32::try_from(initialized_data).unwrap_or(u32::MAX),
    );
    // The checksum covers the new bytes; firmware does not check it, but
    // signing tools and `pesign` warn when it is stale.
    write_u32(&mut out, layout.optional + 64, 0);
    let checksum = pe_checksum(&out, layout.optional + 64);
    write_u32(&mut out, layout.optional + 64, checksum);
    Ok(out)
}

/// The PE checksum: a 16-bit one's-complement sum of the file as 16-bit
/// words, skipping the checksum field itself, plus the file length.
fn pe_checksum(data: &[u8], checksum_at: usize) -> u32 {
    let mut sum: u64 = 0;
    for (i, chunk) in data.chunks(2).enumerate() {
        let at = i * 2;
        if at == checksum_at || at == checksum_at + 2 {
            continue;
        }
        let word = u64::from(chunk[0]) | (u64::from(*chunk.get(1).unwrap_or(&0)) << 8);
        sum += word;
        sum = (sum & 0xffff) + (sum >> 16);
    }
    sum = (sum & 0xffff) + (sum >> 16);
    (sum as u32).wrapping_add(data.len() as u32)
}

/// A section of a PE file by name, for `verify-image` and the tests.
pub fn section<'a>(image: &'a [u8], name: &str) -> Result<Option<&'a [u8]>> {
    let layout = parse(image)?;
    for i in 0..usize::from(layout.sections) {
        let h = layout.section_table + i * SECTION_HEADER_LEN;
        let raw_name = image
            .get(h..h + 8)
            .ok_or_else(|| stub_error(format!("truncated at byte {h}")))?;
        let end = raw_name.iter().position(|b| *b == 0).unwrap_or(8);
        if &raw_name[..end] != name.as_bytes() {
            continue;
        }
        let vsize = read_u32(image, h + 8)? as usize;
        let raw_ptr = read_u32(image, h + 20)? as usize;
        return image
            .get(raw_ptr..raw_ptr + vsize)
            .map(Some)
            .ok_or_else(|| stub_error(format!("section {name} runs past the end")));
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A minimal PE32+ file: headers of 0x400 bytes and one `.text` section.
    fn tiny_stub() -> Vec<u8> {
        let mut f = vec![0u8; 0x600];
        f[0..2].copy_from_slice(b"MZ");
        f[0x3c..0x40].copy_from_slice(&0x80u32.to_le_bytes());
        f[0x80..0x84].copy_from_slice(b"PE\0\0");
        let coff = 0x84;
        f[coff..coff + 2].copy_from_slice(&0x8664u16.to_le_bytes());
        f[coff + 2..coff + 4].copy_from_slice(&1u16.to_le_bytes());
        f[coff + 16..coff + 18].copy_from_slice(&240u16.to_le_bytes());
        let opt = coff + 20;
        f[opt..opt + 2].copy_from_slice(&PE32_PLUS.to_le_bytes());
        f[opt + 32..opt + 36].copy_from_slice(&0x1000u32.to_le_bytes());
        f[opt + 36..opt + 40].copy_from_slice(&0x200u32.to_le_bytes());
        f[opt + 56..opt + 60].copy_from_slice(&0x2000u32.to_le_bytes());
        f[opt + 60..opt + 64].copy_from_slice(&0x400u32.to_le_bytes());
        let sec = opt + 240;
        f[sec..sec + 8].copy_from_slice(b".text\0\0\0");
        f[sec + 8..sec + 12].copy_from_slice(&0x10u32.to_le_bytes());
        f[sec + 12..sec + 16].copy_from_slice(&0x1000u32.to_le_bytes());
        f[sec + 16..sec + 20].copy_from_slice(&0x200u32.to_le_bytes());
        f[sec + 20..sec + 24].copy_from_slice(&0x400u32.to_le_bytes());
        f
    }

    #[test]
    fn appended_sections_read_back_and_do_not_overlap() {
        let initrd = vec![7u8; 5000];
        let linux = vec![9u8; 7000];
        let parts = UkiParts {
            osrel: b"ID=debian\n",
            cmdline: b"root=/dev/mapper/root",
            initrd: &initrd,
            linux: &linux,
        };
        let uki = assemble(&tiny_stub(), &parts).unwrap();
        assert_eq!(
            section(&uki, ".cmdline").unwrap(),
            Some(&b"root=/dev/mapper/root"[..])
        );
        assert_eq!(section(&uki, ".initrd").unwrap(), Some(&initrd[..]));
        assert_eq!(section(&uki, ".linux").unwrap(), Some(&linux[..]));
        assert_eq!(section(&uki, ".osrel").unwrap(), Some(&b"ID=debian\n"[..]));

        let layout = parse(&uki).unwrap();
        assert_eq!(layout.sections, 5);
        let mut spans = Vec::new();
        for i in 0..5 {
            let h = layout.section_table + i * SECTION_HEADER_LEN;
            let vsize = read_u32(&uki, h + 8).unwrap();
            let rva = read_u32(&uki, h + 12).unwrap();
            assert_eq!(rva % 0x1000, 0, "section {i} not aligned");
            spans.push((rva, rva + vsize));
        }
        for pair in spans.windows(2) {
            assert!(pair[0].1 <= pair[1].0, "sections overlap: {spans:?}");
        }
        let size_of_image = read_u32(&uki, layout.optional + 56).unwrap();
        assert!(size_of_image >= spans[4].1);
        // Same inputs, same bytes.
        assert_eq!(uki, assemble(&tiny_stub(), &parts).unwrap());
    }

    #[test]
    fn a_file_that_is_not_a_pe_image_is_refused() {
        let err = assemble(
            b"not a stub",
            &UkiParts {
                osrel: b"",
                cmdline: b"",
                initrd: b"",
                linux: b"",
            },
        )
        .err()
        .unwrap();
        assert!(err.to_string().contains("MZ"), "{err}");
    }
}
