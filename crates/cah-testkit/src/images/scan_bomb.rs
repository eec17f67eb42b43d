//! A progressive-JPEG "scan bomb": a valid greyscale JPEG whose many AC scans are nothing but
//! end-of-band runs, a few dozen bytes each, while every one of them costs a decoder a pass over
//! all of the image's blocks (libjpeg-turbo's report "Two Issues with the JPEG Standard").
//! The picture itself is uniform grey.

/// Side of the square scan bomb the test web serves (16 megapixels, under common pixel caps).
pub const SCAN_BOMB_SIDE: u16 = 4_000;
/// AC scans of the test web's scan bomb (105 KB; libjpeg-turbo spends seconds on it).
pub const SCAN_BOMB_SCANS: usize = 2_000;

/// A `side` x `side` progressive greyscale JPEG: one DC scan, then `scans` identical AC scans of
/// coefficient 1 that are all end-of-band runs. Every scan is valid (a first scan with `Al = 0`
/// may be repeated), so a decoder without a scan limit decodes all of them.
pub fn scan_bomb_jpeg(side: u16, scans: usize) -> Vec<u8> {
    let blocks = usize::from(side).div_ceil(8).pow(2);
    let mut out = vec![0xff, 0xd8];
    // Quantisation table 0, all ones.
    segment(&mut out, 0xdb, &[[0u8].as_slice(), &[1; 64]].concat());
    // SOF2 (progressive): 8-bit, side x side, one component (id 1, 1x1 sampling, table 0).
    let [high, low] = side.to_be_bytes();
    segment(&mut out, 0xc2, &[8, high, low, high, low, 1, 1, 0x11, 0]);
    // DC table 0: one symbol, category 0 ("no difference"), with the 1-bit code `0`.
    let mut dc = vec![0x00, 1];
    dc.extend([0; 15]);
    dc.push(0);
    segment(&mut out, 0xc4, &dc);
    // AC table 0: the end-of-band runs EOB0..EOB14 (symbols 0x00, 0x10, ..., 0xE0), 4-bit codes.
    let mut ac = vec![0x10, 0, 0, 0, 15];
    ac.extend([0; 12]);
    ac.extend((0..15u8).map(|run| run << 4));
    segment(&mut out, 0xc4, &ac);
    // The DC scan: every block's difference is category 0.
    segment(&mut out, 0xda, &[1, 1, 0x00, 0, 0, 0]);
    let mut bits = BitWriter::default();
    for _ in 0..blocks {
        bits.put(0, 1);
    }
    out.extend(bits.finish());
    // One AC scan of coefficient 1 (Ss = Se = 1, Ah = Al = 0): runs of up to 32,767 blocks.
    let mut scan = Vec::new();
    segment(&mut scan, 0xda, &[1, 1, 0x00, 1, 1, 0]);
    let mut bits = BitWriter::default();
    let mut left = blocks;
    while left > 0 {
        let run = left.min(32_767);
        let log = run.ilog2();
        bits.put(log, 4);
        bits.put(u32::try_from(run - (1 << log)).unwrap_or(0), log);
        left -= run;
    }
    scan.extend(bits.finish());
    for _ in 0..scans {
        out.extend_from_slice(&scan);
    }
    out.extend([0xff, 0xd9]);
    out
}

fn segment(out: &mut Vec<u8>, marker: u8, payload: &[u8]) {
    let length = u16::try_from(payload.len() + 2).expect("segments here are small");
    out.extend([0xff, marker]);
    out.extend(length.to_be_bytes());
    out.extend_from_slice(payload);
}

/// Entropy-coded bits, most significant first, with a zero byte stuffed after every `FF`.
#[derive(Default)]
struct BitWriter {
    out: Vec<u8>,
    byte: u8,
    n_bits: u32,
}

impl BitWriter {
    fn put(&mut self, value: u32, n_bits: u32) {
        for shift in (0..n_bits).rev() {
            self.byte = (self.byte << 1) | ((value >> shift) & 1) as u8;
            self.n_bits += 1;
            if self.n_bits == 8 {
                self.out.push(self.byte);
                if self.byte == 0xff {
                    self.out.push(0);
                }
                self.byte = 0;
                self.n_bits = 0;
            }
        }
    }

    /// Pads the last byte with one bits, as JPEG requires.
    fn finish(mut self) -> Vec<u8> {
        while self.n_bits != 0 {
            self.put(1, 1);
        }
        self.out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_small_scan_bomb_is_a_valid_uniform_grey_jpeg() {
        let bytes = scan_bomb_jpeg(64, 5);
        let image = image::load_from_memory(&bytes)
            .expect("a valid progressive jpeg")
            .into_luma8();
        assert_eq!(image.dimensions(), (64, 64));
        assert!(
            image.pixels().all(|pixel| pixel.0[0] == 128),
            "uniform grey"
        );
        let scans = bytes
            .windows(2)
            .filter(|pair| pair == &[0xff, 0xda])
            .count();
        assert_eq!(scans, 6, "one DC scan and five AC scans");
    }

    #[test]
    fn the_served_scan_bomb_is_small_and_has_every_scan() {
        let bytes = scan_bomb_jpeg(SCAN_BOMB_SIDE, SCAN_BOMB_SCANS);
        assert!(bytes.len() < 150_000, "{} bytes", bytes.len());
        let scans = bytes
            .windows(2)
            .filter(|pair| pair == &[0xff, 0xda])
            .count();
        assert_eq!(scans, SCAN_BOMB_SCANS + 1);
        let (format, width, height) = crate::images::sniff(&bytes).expect("a jpeg header");
        assert_eq!(format, image::ImageFormat::Jpeg);
        assert_eq!((width, height), (4_000, 4_000));
    }
}
