//! How deep a JSON text nests, checked before parsing: the DOM parser recurses once per level.

/// Deepest nesting of arrays and objects accepted in a record. Common Crawl's envelopes nest
/// about 8 deep; the parser needs about 200 bytes of stack per level, so this stays far inside
/// the 2 MiB stack of a blocking worker thread.
pub(crate) const MAX_DEPTH: usize = 2048;

/// True when `json` nests arrays and objects at most `max` deep. Most records hold fewer
/// opening brackets than `max` in all, which one vectorized count proves; only the others are
/// walked with strings skipped.
pub(crate) fn within(json: &[u8], max: usize) -> bool {
    opening_brackets(json) <= max || deepest_within(json, max)
}

/// Every `[` and `{` byte, in strings or not (an upper bound of the depth). Counting into a
/// byte per chunk of 255 lets the compiler use vector instructions (about 7 GB/s; byte counters
/// per lane over wider rows measured four times slower).
fn opening_brackets(json: &[u8]) -> usize {
    json.chunks(255)
        .map(|chunk| {
            let count = chunk.iter().fold(0u8, |count, &byte| {
                count + u8::from(byte == b'[' || byte == b'{')
            });
            usize::from(count)
        })
        .sum()
}

/// The exact test: brackets outside strings, escapes inside strings skipped. Text the parser
/// will reject anyway (an unterminated string, a stray closing bracket) is let through: the
/// parser stops there before recursing any deeper than what was counted.
fn deepest_within(json: &[u8], max: usize) -> bool {
    let mut depth = 0usize;
    let mut at = 0;
    while let Some(&byte) = json.get(at) {
        match byte {
            b'"' => {
                at += 1;
                loop {
                    let Some(rest) = json.get(at..) else {
                        return true;
                    };
                    match memchr::memchr2(b'"', b'\\', rest) {
                        Some(offset) if rest[offset] == b'\\' => at += offset + 2,
                        Some(offset) => {
                            at += offset + 1;
                            break;
                        }
                        None => return true,
                    }
                }
                continue;
            }
            b'[' | b'{' => {
                depth += 1;
                if depth > max {
                    return false;
                }
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
        at += 1;
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn depth_table() {
        let cases: &[(&str, usize, bool)] = &[
            ("[]", 1, true),
            ("[[]]", 1, false),
            ("[[]]", 2, true),
            (r#"{"a":{"b":[1]}}"#, 3, true),
            (r#"{"a":{"b":[1]}}"#, 2, false),
            // Brackets in strings, escaped quotes and backslashes do not count.
            (r#"["[[[{{{", "\"[[[", "\\", "x"]"#, 1, true),
            (r#"["\\"]"#, 1, true),
            (r#"["\\\"[[[["]"#, 1, true),
            // Siblings do not add up.
            ("[[],[],[],[],[]]", 2, true),
            // Unterminated text is let through at the depth reached.
            (r#"[["abc"#, 2, true),
            (r#"[["abc\"#, 2, true),
            ("[[[", 2, false),
        ];
        for &(json, max, expected) in cases {
            assert_eq!(
                deepest_within(json.as_bytes(), max),
                expected,
                "{json} {max}"
            );
            if expected {
                // The cheap bound may refuse to decide, never decide wrongly.
                assert!(within(json.as_bytes(), max), "{json} {max}");
            } else {
                assert!(!within(json.as_bytes(), max), "{json} {max}");
            }
        }
        let json = format!("[{}]", "[1],".repeat(1000) + "[2]");
        assert_eq!(opening_brackets(json.as_bytes()), 1002);
        assert!(within(json.as_bytes(), 2));
        assert!(!within(json.as_bytes(), 1));
    }

    #[test]
    fn the_bracket_count_survives_full_chunks_and_ragged_ends() {
        // All brackets fill the byte counter to 255 in each chunk; the odd lengths leave a
        // short last chunk.
        for length in [0, 1, 254, 255, 256, 511, 20_011] {
            let all: Vec<u8> = (0..length)
                .map(|at| if at % 2 == 0 { b'[' } else { b'{' })
                .collect();
            assert_eq!(opening_brackets(&all), length, "{length}");
            let mixed: Vec<u8> = (0..length).map(|at| b"[x{]}\\"[at % 6]).collect();
            let expected = mixed
                .iter()
                .filter(|&&byte| byte == b'[' || byte == b'{')
                .count();
            assert_eq!(opening_brackets(&mixed), expected, "{length}");
        }
    }
}
