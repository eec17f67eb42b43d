//! A PNG whose colour profile (`iCCP`) inflates to hundreds of megabytes costs no memory: the
//! profile is dropped before the decoder sees it. Its own test binary, so that the process's
//! peak resident set is this test's alone.

use std::io::Cursor;

use scraper_d::validate::{ValidateConfig, decode};

/// A zlib stream of `n_runs * 258 + 1` zero bytes in about `n_runs * 13 / 8` bytes: one fixed
/// Huffman block of a literal 0 and then copies of 258 bytes at distance 1.
fn zeros_bomb(n_runs: usize) -> Vec<u8> {
    struct Bits {
        out: Vec<u8>,
        acc: u64,
        n: u32,
    }
    impl Bits {
        /// Writes `n` bits of `value`, least significant first.
        fn put(&mut self, value: u64, n: u32) {
            self.acc |= value << self.n;
            self.n += n;
            while self.n >= 8 {
                self.out.push(self.acc as u8);
                self.acc >>= 8;
                self.n -= 8;
            }
        }
        /// Writes a Huffman code of `n` bits, most significant first.
        fn code(&mut self, code: u64, n: u32) {
            let reversed = (0..n).fold(0, |acc, bit| acc | ((code >> bit) & 1) << (n - 1 - bit));
            self.put(reversed, n);
        }
    }
    let mut bits = Bits {
        out: vec![0x78, 0x01],
        acc: 0,
        n: 0,
    };
    bits.put(1, 1); // BFINAL
    bits.put(1, 2); // fixed Huffman
    bits.code(0x30, 8); // literal 0
    for _ in 0..n_runs {
        bits.code(0xc5, 8); // length code 285: 258
        bits.code(0, 5); // distance code 0: 1
    }
    bits.code(0, 7); // end of block
    bits.put(0, 7);
    // The Adler-32 of the output is not checked by the inflater that reads profiles.
    bits.out.extend_from_slice(&[0, 0, 0, 0]);
    bits.out
}

fn chunk(kind: &[u8; 4], data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(&(data.len() as u32).to_be_bytes());
    out.extend_from_slice(kind);
    out.extend_from_slice(data);
    let mut crc = flate2::Crc::new();
    crc.update(kind);
    crc.update(data);
    out.extend_from_slice(&crc.sum().to_be_bytes());
    out
}

/// Peak resident set of this process so far, in KiB.
fn peak_rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("proc status");
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmHWM:"))
        .and_then(|value| value.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmHWM")
}

#[test]
fn a_png_profile_that_inflates_to_300_mb_costs_no_memory() {
    let image = image::RgbImage::from_fn(200, 150, |x, y| {
        image::Rgb([(x % 256) as u8, (y % 256) as u8, ((x * y) % 256) as u8])
    });
    let mut plain = Vec::new();
    image
        .write_to(&mut Cursor::new(&mut plain), image::ImageFormat::Png)
        .expect("encode");
    let mut profile = b"bomb\0\0".to_vec();
    profile.extend(zeros_bomb(300_000_000 / 258));
    // After the signature (8) and IHDR (25).
    let bytes = [&plain[..33], &chunk(b"iCCP", &profile), &plain[33..]].concat();
    assert!(bytes.len() < 3_000_000, "{}", bytes.len());

    let before = peak_rss_kib();
    let decoded = decode(&bytes, &ValidateConfig::standard(), None).expect("decodes");
    assert_eq!(decoded.image.to_rgb8(), image);
    let grown_mib = (peak_rss_kib().saturating_sub(before)) / 1024;
    assert!(grown_mib < 64, "the decode took {grown_mib} MiB more");
}
