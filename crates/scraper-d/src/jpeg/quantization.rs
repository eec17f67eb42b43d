//! Quantization tables (`DQT` segments) of a JPEG, rewritten with each value multiplied by a
//! power of two: a coefficient that a progressive scan sends without its lowest bits is then
//! dequantized to the same value with its point transform taken out of the scan (see
//! `progression.rs`).

/// Per quantization table (0–3) and coefficient (zigzag order), how many low bits the first
/// scans of the components using that table leave out.
#[derive(Debug)]
pub(super) struct Shifts([[Option<u8>; 64]; 4]);

impl Default for Shifts {
    fn default() -> Self {
        Shifts([[None; 64]; 4])
    }
}

impl Shifts {
    /// Records that coefficient `k` of the components using `table` arrives `shift` bits short,
    /// or says `false` when another component using that table said otherwise (or the table or
    /// coefficient does not exist).
    pub(super) fn record(&mut self, table: u8, k: u8, shift: u8) -> bool {
        let Some(slot) = self
            .0
            .get_mut(usize::from(table))
            .and_then(|table| table.get_mut(usize::from(k)))
        else {
            return false;
        };
        match *slot {
            Some(known) => known == shift,
            None => {
                *slot = Some(shift);
                true
            }
        }
    }

    /// The bits coefficient `k` of `table` arrives short (0 when no scan said).
    fn of(&self, table: usize, k: usize) -> u8 {
        self.0[table][k].unwrap_or(0)
    }
}

/// Largest value a table may hold after scaling: libjpeg keeps the dequantization multipliers
/// of its integer IDCTs in 16-bit signed integers.
const MAX_SCALED: u32 = i16::MAX as u32;

/// One table of a `DQT` segment.
#[derive(Debug)]
pub(super) struct Table {
    /// Its number, 0–3.
    pub(super) id: u8,
    /// Its values in zigzag order.
    pub(super) values: [u32; 64],
}

/// The tables of a `DQT` segment (from its `FF DB`), or `None` when it does not parse.
pub(super) fn tables(segment: &[u8]) -> Option<Vec<Table>> {
    let mut rest = segment.get(4..)?;
    let mut found = Vec::new();
    while let Some((&id, after)) = rest.split_first() {
        let (sixteen_bit, table) = (id >> 4, id & 0x0F);
        if sixteen_bit > 1 || table > 3 {
            return None;
        }
        let width = usize::from(sixteen_bit) + 1;
        let (bytes, after) = (after.get(..64 * width)?, after.get(64 * width..)?);
        let mut values = [0u32; 64];
        for (value, bytes) in values.iter_mut().zip(bytes.chunks_exact(width)) {
            *value = bytes
                .iter()
                .fold(0u32, |sum, byte| sum << 8 | u32::from(*byte));
        }
        found.push(Table { id: table, values });
        rest = after;
    }
    Some(found)
}

/// A `DQT` segment (from its `FF DB`) with each value multiplied by 2^shift of its table and
/// coefficient, written with 16-bit precision where a value no longer fits a byte; `None` when
/// the segment does not parse or a value would exceed [`MAX_SCALED`].
pub(super) fn scaled(segment: &[u8], shifts: &Shifts) -> Option<Vec<u8>> {
    let mut body = Vec::with_capacity(segment.len() + 128);
    for table in tables(segment)? {
        let mut scaled = table.values;
        for (k, value) in scaled.iter_mut().enumerate() {
            *value <<= shifts.of(usize::from(table.id), k);
            if *value > MAX_SCALED {
                return None;
            }
        }
        if scaled.iter().any(|value| *value > 255) {
            body.push(0x10 | table.id);
            body.extend(
                scaled
                    .iter()
                    .flat_map(|value| (*value as u16).to_be_bytes()),
            );
        } else {
            body.push(table.id);
            body.extend(scaled.iter().map(|value| *value as u8));
        }
    }
    let length = u16::try_from(body.len() + 2).ok()?;
    let mut out = Vec::with_capacity(body.len() + 4);
    out.extend_from_slice(&segment[..2]);
    out.extend_from_slice(&length.to_be_bytes());
    out.extend_from_slice(&body);
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A DQT segment of the given tables (id byte, then values in zigzag order).
    fn segment(tables: &[(u8, Vec<u16>)]) -> Vec<u8> {
        let mut body = Vec::new();
        for (id, values) in tables {
            body.push(*id);
            if id >> 4 == 1 {
                body.extend(values.iter().flat_map(|value| value.to_be_bytes()));
            } else {
                body.extend(values.iter().map(|value| *value as u8));
            }
        }
        let mut out = vec![0xFF, 0xDB];
        out.extend_from_slice(&(body.len() as u16 + 2).to_be_bytes());
        out.extend(body);
        out
    }

    #[test]
    fn values_double_per_bit_and_widen_only_when_they_must() {
        let luma: Vec<u16> = (1..=64).collect();
        let chroma: Vec<u16> = (0..64).map(|k| 99 + k).collect();
        let mut shifts = Shifts::default();
        for k in 1..64 {
            assert!(shifts.record(0, k, 2));
            assert!(shifts.record(1, k, 1));
        }
        let out =
            scaled(&segment(&[(0, luma.clone()), (1, chroma.clone())]), &shifts).expect("scales");
        // Luma: 64 << 2 = 256 no longer fits a byte; chroma: 162 << 1 = 324 neither.
        let want_luma: Vec<u16> = luma
            .iter()
            .enumerate()
            .map(|(k, v)| if k == 0 { *v } else { v << 2 })
            .collect();
        let want_chroma: Vec<u16> = chroma
            .iter()
            .enumerate()
            .map(|(k, v)| if k == 0 { *v } else { v << 1 })
            .collect();
        assert_eq!(out, segment(&[(0x10, want_luma), (0x11, want_chroma)]));
        // Small values stay 8-bit; a table no scan named stays as it was.
        let small: Vec<u16> = vec![3; 64];
        let out =
            scaled(&segment(&[(0, small.clone()), (2, small.clone())]), &shifts).expect("scales");
        let mut want = vec![12u16; 64];
        want[0] = 3;
        assert_eq!(out, segment(&[(0, want), (2, small)]));
    }

    #[test]
    fn disagreeing_components_and_bad_segments_are_refused() {
        let mut shifts = Shifts::default();
        assert!(shifts.record(0, 5, 2));
        assert!(shifts.record(0, 5, 2), "the same answer twice");
        assert!(
            !shifts.record(0, 5, 1),
            "another component of table 0 says 1"
        );
        assert!(!shifts.record(4, 1, 1), "no table 4");
        assert!(!shifts.record(0, 64, 1), "no coefficient 64");
        let values = vec![200u16; 64];
        assert!(scaled(&segment(&[(0, values.clone())]), &shifts).is_some());
        let huge = vec![20_000u16; 64];
        assert_eq!(
            scaled(&segment(&[(0x10, huge)]), &shifts),
            None,
            "past 16 bits signed"
        );
        let mut cut = segment(&[(0, values)]);
        cut.truncate(40);
        assert_eq!(scaled(&cut, &shifts), None, "cut short");
        assert_eq!(
            scaled(&segment(&[(0x25, vec![1; 64])]), &shifts),
            None,
            "precision 2, table 5"
        );
    }
}
