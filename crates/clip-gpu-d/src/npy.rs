//! NumPy `.npy` (format 1.0) for row-major little-endian float32 or float16 matrices.
//!
//! Format: <https://numpy.org/doc/stable/reference/generated/numpy.lib.format.html>.

use std::io::{Read, Write};
use std::path::Path;

const MAGIC: &[u8] = b"\x93NUMPY";

/// How embeddings are stored: float32, or float16 as clip-retrieval writes them (half the
/// size; rounding moves a unit vector's cosines by at most about 1e-3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum EmbeddingDtype {
    #[default]
    F32,
    F16,
}

impl EmbeddingDtype {
    /// NumPy's name of the type (`float32`, `float16`), as `_stats.json` says it.
    pub fn numpy_name(self) -> &'static str {
        match self {
            EmbeddingDtype::F32 => "float32",
            EmbeddingDtype::F16 => "float16",
        }
    }

    fn descr(self) -> &'static str {
        match self {
            EmbeddingDtype::F32 => "<f4",
            EmbeddingDtype::F16 => "<f2",
        }
    }

    fn size(self) -> usize {
        match self {
            EmbeddingDtype::F32 => 4,
            EmbeddingDtype::F16 => 2,
        }
    }
}

/// Writes `values` as a `rows × cols` float32 array; the file appears only when complete.
pub fn write_f32(path: &Path, rows: usize, cols: usize, values: &[f32]) -> std::io::Result<()> {
    write(path, rows, cols, values, EmbeddingDtype::F32)
}

/// Writes `values` as a `rows × cols` array of `dtype` (float16 rounds to nearest even); the
/// file appears only when complete.
pub fn write(
    path: &Path,
    rows: usize,
    cols: usize,
    values: &[f32],
    dtype: EmbeddingDtype,
) -> std::io::Result<()> {
    if values.len() != rows * cols {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            format!("{} values for a {rows}x{cols} array", values.len()),
        ));
    }
    let mut header = format!(
        "{{'descr': '{}', 'fortran_order': False, 'shape': ({rows}, {cols}), }}",
        dtype.descr()
    );
    // Magic (6) + version (2) + length (2) + header + newline is a multiple of 64.
    let unpadded = MAGIC.len() + 4 + header.len() + 1;
    header.push_str(&" ".repeat((64 - unpadded % 64) % 64));
    header.push('\n');
    let header_len = u16::try_from(header.len()).map_err(|_| {
        std::io::Error::new(std::io::ErrorKind::InvalidInput, "npy header too long")
    })?;
    let mut bytes =
        Vec::with_capacity(MAGIC.len() + 4 + header.len() + values.len() * dtype.size());
    bytes.extend_from_slice(MAGIC);
    bytes.extend_from_slice(&[1, 0]);
    bytes.extend_from_slice(&header_len.to_le_bytes());
    bytes.extend_from_slice(header.as_bytes());
    match dtype {
        EmbeddingDtype::F32 => {
            for value in values {
                bytes.extend_from_slice(&value.to_le_bytes());
            }
        }
        EmbeddingDtype::F16 => {
            for value in values {
                bytes.extend_from_slice(&half::f16::from_f32(*value).to_le_bytes());
            }
        }
    }
    let partial = path.with_extension("npy.tmp");
    let mut file = std::fs::File::create(&partial)?;
    file.write_all(&bytes)?;
    file.sync_all()?;
    std::fs::rename(&partial, path)
}

/// Reads a 2-D little-endian float32 array written by [`write_f32`] or NumPy.
pub fn read_f32(path: &Path) -> std::io::Result<(usize, usize, Vec<f32>)> {
    match read(path)? {
        (rows, cols, EmbeddingDtype::F32, values) => Ok((rows, cols, values)),
        _ => Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("{}: not a float32 array", path.display()),
        )),
    }
}

/// Reads a 2-D little-endian float32 or float16 array (as f32 values) and says which it was.
pub fn read(path: &Path) -> std::io::Result<(usize, usize, EmbeddingDtype, Vec<f32>)> {
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
    let dtype = [EmbeddingDtype::F32, EmbeddingDtype::F16]
        .into_iter()
        .find(|dtype| header.contains(&format!("'descr': '{}'", dtype.descr())))
        .filter(|_| header.contains("'fortran_order': False"))
        .ok_or_else(|| invalid("not a C-order float32 or float16 array"))?;
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
    if data.len() != rows * cols * dtype.size() {
        return Err(invalid("data size does not match the shape"));
    }
    let values = match dtype {
        EmbeddingDtype::F32 => data
            .chunks_exact(4)
            .map(|chunk| f32::from_le_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]))
            .collect(),
        EmbeddingDtype::F16 => data
            .chunks_exact(2)
            .map(|chunk| half::f16::from_le_bytes([chunk[0], chunk[1]]).to_f32())
            .collect(),
    };
    Ok((rows, cols, dtype, values))
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

    #[test]
    fn float16_halves_the_data_and_rounds_to_nearest() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (wide, narrow) = (dir.path().join("wide.npy"), dir.path().join("narrow.npy"));
        let values = [0.1, -0.25, 1.0 / 3.0, 65_504.0, 1e-8, 0.0];
        write(&wide, 2, 3, &values, EmbeddingDtype::F32).expect("write f32");
        write(&narrow, 2, 3, &values, EmbeddingDtype::F16).expect("write f16");
        let data_size = |path: &Path| {
            let bytes = std::fs::read(path).expect("read");
            let header_len = usize::from(u16::from_le_bytes([bytes[8], bytes[9]]));
            let header = String::from_utf8_lossy(&bytes[10..10 + header_len]).into_owned();
            (header, bytes.len() - 10 - header_len)
        };
        let (header, narrow_size) = data_size(&narrow);
        assert!(header.contains("'descr': '<f2'"), "{header}");
        assert_eq!(narrow_size, values.len() * 2);
        assert_eq!(data_size(&wide).1, values.len() * 4);
        let (rows, cols, dtype, read_back) = read(&narrow).expect("read back");
        assert_eq!((rows, cols, dtype), (2, 3, EmbeddingDtype::F16));
        // 0.1 is 0x2E66 in binary16, 1/3 is 0x3555; 1e-8 is below the smallest subnormal.
        assert_eq!(read_back[0], half::f16::from_bits(0x2E66).to_f32());
        assert_eq!(read_back[2], half::f16::from_bits(0x3555).to_f32());
        assert_eq!(&read_back[3..], &[65_504.0, 0.0, 0.0]);
        assert_eq!(read_back[1], -0.25);
        for (original, stored) in values.iter().zip(&read_back) {
            assert!((original - stored).abs() <= original.abs() / 2048.0 + 1e-7);
        }
        assert!(read_f32(&narrow).is_err(), "read_f32 is for float32 only");
    }
}
