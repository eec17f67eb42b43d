//! NumPy `.npy` (format 1.0) for row-major little-endian f32 matrices.
//!
//! Format: <https://numpy.org/doc/stable/reference/generated/numpy.lib.format.html>.

use std::io::{Read, Write};
use std::path::Path;

const MAGIC: &[u8] = b"\x93NUMPY";

/// Writes `values` as a `rows × cols` float32 array; the file appears only when complete.
pub fn write_f32(path: &Path, rows: usize, cols: usize, values: &[f32]) -> std::io::Result<()> {
    if values.len() != rows * cols {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            format!("{} values for a {rows}x{cols} array", values.len()),
        ));
    }
    let mut header =
        format!("{{'descr': '<f4', 'fortran_order': False, 'shape': ({rows}, {cols}), }}");
    // Magic (6) + version (2) + length (2) + header + newline is a multiple of 64.
    let unpadded = MAGIC.len() + 4 + header.len() + 1;
    header.push_str(&" ".repeat((64 - unpadded % 64) % 64));
    header.push('\n');
    let header_len = u16::try_from(header.len()).map_err(|_| {
        std::io::Error::new(std::io::ErrorKind::InvalidInput, "npy header too long")
    })?;
    let mut bytes = Vec::with_capacity(MAGIC.len() + 4 + header.len() + values.len() * 4);
    bytes.extend_from_slice(MAGIC);
    bytes.extend_from_slice(&[1, 0]);
    bytes.extend_from_slice(&header_len.to_le_bytes());
    bytes.extend_from_slice(header.as_bytes());
    for value in values {
        bytes.extend_from_slice(&value.to_le_bytes());
    }
    let partial = path.with_extension("npy.tmp");
    let mut file = std::fs::File::create(&partial)?;
    file.write_all(&bytes)?;
    file.sync_all()?;
    std::fs::rename(&partial, path)
}

/// Reads a 2-D little-endian float32 array written by [`write_f32`] or NumPy.
pub fn read_f32(path: &Path) -> std::io::Result<(usize, usize, Vec<f32>)> {
    let invalid = |message: &str| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("{}: {message}", path.display()),
        )
    };
    let mut bytes = Vec::new();
    std::fs::File::open(path)?.read_to_end(&mut bytes)?;
    if bytes.len() < 10 || &bytes[..6] != MAGIC || bytes[6] != 1 {
        return Err(invalid("not an npy 1.x file"));
    }
    let header_len = usize::from(u16::from_le_bytes([bytes[8], bytes[9]]));
    let header = std::str::from_utf8(
        bytes
            .get(10..10 + header_len)
            .ok_or_else(|| invalid("short header"))?,
    )
    .map_err(|_| invalid("header is not utf-8"))?;
    if !header.contains("'descr': '<f4'") || !header.contains("'fortran_order': False") {
        return Err(invalid("not a C-order float32 array"));
    }
    let shape = header
        .split("'shape': (")
        .nth(1)
        .and_then(|rest| rest.split(')').next())
        .ok_or_else(|| invalid("no shape"))?;
    let dims: Vec<usize> = shape
        .split(',')
        .map(str::trim)
        .filter(|dim| !dim.is_empty())
        .map(str::parse)
        .collect::<Result<_, _>>()
        .map_err(|_| invalid("bad shape"))?;
    let (rows, cols) = match dims.as_slice() {
        [rows, cols] => (*rows, *cols),
        _ => return Err(invalid("not a 2-D array")),
    };
    let data = &bytes[10 + header_len..];
    if data.len() != rows * cols * 4 {
        return Err(invalid("data size does not match the shape"));
    }
    let values = data
        .chunks_exact(4)
        .map(|chunk| f32::from_le_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]))
        .collect();
    Ok((rows, cols, values))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_aligns_the_header() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("a.npy");
        write_f32(&path, 2, 3, &[1.0, 2.0, 3.0, 4.0, 5.0, -6.5]).expect("write");
        let bytes = std::fs::read(&path).expect("read");
        let header_len = usize::from(u16::from_le_bytes([bytes[8], bytes[9]]));
        assert_eq!((10 + header_len) % 64, 0);
        assert_eq!(
            read_f32(&path).expect("read back"),
            (2, 3, vec![1.0, 2.0, 3.0, 4.0, 5.0, -6.5])
        );
        assert!(write_f32(&path, 2, 2, &[1.0]).is_err());
    }
}
