//! ftfy's mojibake repair: `ftfy.fix_encoding` with default settings, from ftfy 6.3.1.
//!
//! This is the control flow of `fix_encoding_and_explain` and
//! `_fix_encoding_one_step_and_explain` (`ftfy/__init__.py`), the byte fixers
//! `restore_byte_a0`, `replace_lossy_sequences`, `decode_inconsistent_utf8` and
//! `fix_c1_controls` (`ftfy/fixes.py`), and the `utf-8-variants` codec
//! (`ftfy/bad_codecs/utf8_variants.py`).
//! Code pages and regexes come from ftfy itself through `ftfy_tables.rs`, which
//! `scripts/gen-ftfy-tables.py` generates.
//! Where Python raises `UnicodeDecodeError`, the functions here return `None`: ftfy then
//! tries the next encoding.

use std::collections::HashMap;
use std::ops::{Range, RangeInclusive};
use std::sync::LazyLock;

use regex::Regex;

use super::ftfy_tables as tables;

/// `ftfy.fix_encoding(text)`: repair steps until the text stops changing.
pub(super) fn fix_encoding(text: &str) -> String {
    let mut text = text.to_owned();
    loop {
        match fix_encoding_one_step(&text) {
            Some(fixed) if fixed != text => text = fixed,
            _ => return text,
        }
    }
}

/// `badness.is_bad`: whether the text contains a sequence that is typical of mojibake.
fn is_bad(text: &str) -> bool {
    static BADNESS: LazyLock<Regex> =
        LazyLock::new(|| Regex::new(tables::BADNESS).expect("generated regex is valid"));
    BADNESS.is_match(text)
}

/// One step of `_fix_encoding_one_step_and_explain`; `None` where it returns the text as is.
fn fix_encoding_one_step(text: &str) -> Option<String> {
    // ASCII text, the empty string included, and text without mojibake stay as they are.
    if text.is_ascii() || !is_bad(text) {
        return None;
    }

    // The common case: UTF-8 that was decoded with a single-byte encoding.
    let mut latin_1_possible = false;
    for charmap in CHARMAPS.iter() {
        let Some(encoded) = charmap.encode(text) else {
            continue;
        };
        latin_1_possible |= charmap.name == "latin-1";
        if let Some(fixed) = decode_encoded(charmap.name, encoded) {
            return Some(fixed);
        }
    }

    // UTF-8 mojibake that is mixed with text that no single encoding explains.
    if utf8_detector_matches(text).next().is_some() {
        let fixed = decode_inconsistent_utf8(text);
        if fixed != text {
            return Some(fixed);
        }
    }

    // Latin-1 that was meant as Windows-1252. ftfy skips this when "windows-1252" is among
    // the possible encodings, but that list only ever holds "sloppy-windows-1252", so the
    // skip never happens; strict Windows-1252 refuses five bytes, and then nothing changes.
    if latin_1_possible
        && let Some(fixed) = text
            .chars()
            .map(|character| {
                let byte = usize::try_from(u32::from(character)).ok()?;
                tables::WINDOWS_1252.get(byte).copied().flatten()
            })
            .collect::<Option<String>>()
        && fixed != text
    {
        return Some(fixed);
    }

    // `fix_c1_controls`: whatever C1 controls remain are read as sloppy Windows-1252.
    if C1_CONTROL.is_match(text) {
        let sloppy_windows_1252 = &CHARMAPS[1].decode;
        let fixed = C1_CONTROL.replace_all(text, |captures: &regex::Captures<'_>| {
            captures[0]
                .chars()
                .map(|character| {
                    usize::try_from(u32::from(character))
                        .ok()
                        .and_then(|byte| sloppy_windows_1252.get(byte).copied())
                        .unwrap_or(character)
                })
                .collect::<String>()
        });
        return Some(fixed.into_owned());
    }

    // Mixups between two single-byte encodings other than Latin-1 and Windows-1252 are left
    // alone by ftfy 6.3 too.
    None
}

/// One of ftfy's `CHARMAP_ENCODINGS`.
struct Charmap {
    name: &'static str,
    decode: &'static [char; 256],
    encode: HashMap<char, u8>,
}

static CHARMAPS: LazyLock<Vec<Charmap>> = LazyLock::new(|| {
    tables::CHARMAP_ENCODINGS
        .iter()
        .map(|(name, decode)| Charmap {
            name,
            decode,
            encode: decode
                .iter()
                .zip(0..=u8::MAX)
                .map(|(&character, byte)| (character, byte))
                .collect(),
        })
        .collect()
});

static C1_CONTROL: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(tables::C1_CONTROL).expect("generated regex is valid"));

impl Charmap {
    /// `text.encode(name)`, or `None` where `possible_encoding(text, name)` is false (the
    /// generator checks that both accept the same characters).
    fn encode(&self, text: &str) -> Option<Vec<u8>> {
        text.chars()
            .map(|character| self.encode.get(&character).copied())
            .collect()
    }
}

/// The bytes of a single-byte encoding, fixed up and decoded as UTF-8 or its variants.
fn decode_encoded(encoding: &str, mut encoded: Vec<u8>) -> Option<String> {
    static ALTERED_UTF8: LazyLock<regex::bytes::Regex> = LazyLock::new(|| {
        regex::bytes::Regex::new(tables::ALTERED_UTF8).expect("generated regex is valid")
    });
    static LOSSY_UTF8: LazyLock<regex::bytes::Regex> = LazyLock::new(|| {
        regex::bytes::Regex::new(tables::LOSSY_UTF8).expect("generated regex is valid")
    });
    // MacRoman is left out because there an en dash followed by a space would match.
    if encoding != "macroman" && ALTERED_UTF8.is_match(&encoded) {
        encoded = restore_byte_a0(&ALTERED_UTF8, &encoded);
    }
    if encoding.starts_with("sloppy") {
        // `replace_lossy_sequences`: UTF-8 sequences with a byte lost to U+FFFD (byte 0x1A in
        // the sloppy codecs) decode as U+FFFD.
        let replacement = regex::bytes::NoExpand("\u{fffd}".as_bytes());
        encoded = LOSSY_UTF8.replace_all(&encoded, replacement).into_owned();
    }
    if encoded.contains(&0xed) || encoded.contains(&0xc0) {
        decode_utf8_variants(&encoded)
    } else {
        String::from_utf8(encoded).ok()
    }
}

/// `fixes.restore_byte_a0`: puts back the 0xA0 bytes that became spaces inside UTF-8
/// sequences.
fn restore_byte_a0(altered_utf8: &regex::bytes::Regex, bytes: &[u8]) -> Vec<u8> {
    // `A_GRAVE_WORD_RE.sub(b"\xc3\xa0 ", byts)`: "Ã " before most words is "à ".
    let mut restored = Vec::with_capacity(bytes.len() + 8);
    let mut position = 0;
    while position < bytes.len() {
        let rest = &bytes[position..];
        if let Some(after) = rest.strip_prefix(tables::A_GRAVE_WORD)
            && !tables::A_GRAVE_WORD_NOT_BEFORE
                .iter()
                .any(|word| after.starts_with(word))
        {
            restored.extend_from_slice(b"\xc3\xa0 ");
            position += tables::A_GRAVE_WORD.len();
        } else {
            restored.push(bytes[position]);
            position += 1;
        }
    }
    altered_utf8
        .replace_all(&restored, |captures: &regex::bytes::Captures<'_>| {
            captures[0]
                .iter()
                .map(|&byte| if byte == b' ' { 0xa0 } else { byte })
                .collect::<Vec<u8>>()
        })
        .into_owned()
}

/// `fixes.decode_inconsistent_utf8`: fixes each UTF-8-looking stretch on its own.
fn decode_inconsistent_utf8(text: &str) -> String {
    let n_chars = text.chars().count();
    let mut fixed = String::with_capacity(text.len());
    let mut end_of_last = 0;
    for range in utf8_detector_matches(text) {
        fixed.push_str(&text[end_of_last..range.start]);
        let stretch = &text[range.clone()];
        // Only shorter stretches, so that this cannot recurse forever.
        if stretch.chars().count() < n_chars && is_bad(stretch) {
            fixed.push_str(&fix_encoding(stretch));
        } else {
            fixed.push_str(stretch);
        }
        end_of_last = range.end;
    }
    fixed.push_str(&text[end_of_last..]);
    fixed
}

/// The matches of `UTF8_DETECTOR_RE`, as Python's `finditer` finds them: a match may not
/// start right after a character of the look-behind class, and the search then goes on one
/// character later.
fn utf8_detector_matches(text: &str) -> impl Iterator<Item = Range<usize>> + '_ {
    static DETECTOR: LazyLock<Regex> =
        LazyLock::new(|| Regex::new(tables::UTF8_DETECTOR).expect("generated regex is valid"));
    static NOT_AFTER: LazyLock<Regex> = LazyLock::new(|| {
        Regex::new(tables::UTF8_DETECTOR_NOT_AFTER).expect("generated regex is valid")
    });
    let mut position = 0;
    std::iter::from_fn(move || {
        while let Some(found) = DETECTOR.find_at(text, position) {
            let start = found.start();
            let refused = text[..start].chars().next_back().is_some_and(|previous| {
                let mut buffer = [0; 4];
                NOT_AFTER.is_match(previous.encode_utf8(&mut buffer))
            });
            let next_char = start + text[start..].chars().next().map_or(1, char::len_utf8);
            if refused {
                position = next_char;
                continue;
            }
            // Every alternative is at least two characters long, so matches are never empty.
            position = found.end().max(next_char);
            return Some(found.range());
        }
        None
    })
}

/// `bytes.decode("utf-8-variants")`: strict UTF-8 that also takes CESU-8 surrogate pairs
/// and Java's two-byte null, following `IncrementalDecoder._buffer_decode_step`.
fn decode_utf8_variants(bytes: &[u8]) -> Option<String> {
    let mut decoded = String::with_capacity(bytes.len());
    let mut rest = bytes;
    while !rest.is_empty() {
        let cutoff = (0..rest.len()).find(|&index| starts_special_sequence(rest, index));
        match cutoff {
            None => {
                decoded.push_str(std::str::from_utf8(rest).ok()?);
                break;
            }
            Some(cutoff) if cutoff > 0 => {
                decoded.push_str(std::str::from_utf8(&rest[..cutoff]).ok()?);
                rest = &rest[cutoff..];
            }
            Some(_) if rest[0] == 0xc0 => {
                // Python consumes two bytes whatever the second one is: 0x80, or the final
                // b"\n" that the regex's `$` matched before.
                if rest.len() < 2 {
                    return None;
                }
                decoded.push('\0');
                rest = &rest[2..];
            }
            Some(_) if rest.len() < 6 => {
                decoded.push_str(std::str::from_utf8(rest).ok()?);
                break;
            }
            Some(_) => {
                // Otherwise Python decodes the first three bytes, an encoded surrogate, as
                // plain UTF-8, which raises.
                decoded.push(cesu8_pair(rest)?);
                rest = &rest[6..];
            }
        }
    }
    Some(decoded)
}

/// Whether `SPECIAL_BYTES_RE` (a Java null, a CESU-8 pair or a lone surrogate, each possibly
/// cut off by the end) matches at `index`.
/// A CESU-8 match always implies a surrogate match, so it needs no check of its own.
fn starts_special_sequence(bytes: &[u8], index: usize) -> bool {
    match bytes[index] {
        0xc0 => byte_in(bytes, index + 1, &(0x80..=0x80)) || python_end(bytes, index + 1),
        0xed => {
            python_end(bytes, index + 1)
                || (byte_in(bytes, index + 1, &(0xa0..=0xbf))
                    && (byte_in(bytes, index + 2, &(0x80..=0xbf)) || python_end(bytes, index + 2)))
        }
        _ => false,
    }
}

/// The code point of a CESU-8 pair at the start of `bytes` (at least six of them), if
/// `CESU8_RE` matches there.
fn cesu8_pair(bytes: &[u8]) -> Option<char> {
    const GROUPS: [RangeInclusive<u8>; 5] = [
        0xa0..=0xaf,
        0x80..=0xbf,
        0xed..=0xed,
        0xb0..=0xbf,
        0x80..=0xbf,
    ];
    if bytes.first() != Some(&0xed) {
        return None;
    }
    for (offset, group) in GROUPS.iter().enumerate() {
        let position = offset + 1;
        if byte_in(bytes, position, group) {
            continue;
        }
        // Each group is `(...|$)`: once `$` matches, it matches every later group too.
        if python_end(bytes, position) {
            break;
        }
        return None;
    }
    let code = ((u32::from(bytes[1]) & 0x0f) << 16)
        + ((u32::from(bytes[2]) & 0x3f) << 10)
        + ((u32::from(bytes[4]) & 0x0f) << 6)
        + (u32::from(bytes[5]) & 0x3f)
        + 0x10000;
    // At most 0xFFFFF + 0x10000: always a supplementary code point.
    Some(char::from_u32(code).expect("a CESU-8 pair encodes a code point"))
}

fn byte_in(bytes: &[u8], position: usize, range: &RangeInclusive<u8>) -> bool {
    bytes.get(position).is_some_and(|byte| range.contains(byte))
}

/// Python's `$` without MULTILINE: the end, or just before a final newline.
fn python_end(bytes: &[u8], position: usize) -> bool {
    position == bytes.len() || (position + 1 == bytes.len() && bytes[position] == b'\n')
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Expected outputs are `ftfy.fix_encoding` 6.3.1's, computed in the venv.
    #[test]
    fn fixes_like_ftfy() {
        let cases = [
            // ftfy's documented examples.
            ("âœ” No problems", "✔ No problems"),
            (
                "The Mona Lisa doesnÃ¢â‚¬â„¢t have eyebrows.",
                "The Mona Lisa doesn’t have eyebrows.",
            ),
            ("sÃ³", "só"),
            ("voilÃ le travail", "voilà le travail"),
            ("Ã³", "ó"),
            ("&ATILDE;&SUP3;", "&ATILDE;&SUP3;"),
            ("schÃ¶n", "schön"),
            // Windows-1251 and Windows-1252, once and twice.
            ("РџСЂРёРІРµС‚", "Привет"),
            ("Ð¿Ñ€Ð¸Ð²ÐµÑ‚", "привет"),
            ("ÐšÐ¾ÑˆÐºÐ°", "Кошка"),
            ("ГўВЂВњtestГўВЂВќ", "“test”"),
            ("Î•Î»Î»Î·Î½Î¹ÎºÎ¬", "Ελληνικά"),
            ("Å\u{81}Ã³dÅº", "Łódź"),
            ("ðŸ‘\u{8d}", "👍"),
            ("à¤¹à¤¿à¤¨à¥\u{8d}à¤¦à¥€", "हिन\u{94d}दी"),
            ("Ã¢â‚¬â€œ", "–"),
            ("Ã\u{83}Â©", "é"),
            // The other code pages.
            ("caf├⌐", "café"),
            ("caf√© d√©j√†", "café déjà"),
            ("na√Øve ‚Äî ‚Äúx‚Äù", "naïve — “x”"),
            ("Ĺ�ĂłdĹş ĹĽĂłĹ‚Ä‡", "�ódź żółć"),
            ("Ĺ\u{81}ĂłdĹş", "Łódź"),
            ("Ξ•Ξ»Ξ»Ξ·Ξ½ΞΉΞΊΞ¬", "Ελληνικά"),
            ("Ä°stanbul ÄŸÃ¼", "İstanbul ğü"),
            ("Å\u{a0}Ä·Ä“le", "Šķēle"),
            // restore_byte_a0 and its "Ã " before words.
            ("Ã la mode", "à la mode"),
            ("Ã quele", "àquele"),
            ("Ã\u{a0} bientÃ´t", "à bientôt"),
            // replace_lossy_sequences.
            ("â€œ like this â€�", "“ like this �"),
            // decode_inconsistent_utf8.
            ("ÃºnicoÂ", "únicoÂ"),
            (
                "Mixed: cafÃ© and Ã©tÃ©, plus real é",
                "Mixed: café and été, plus real é",
            ),
            ("Ã¢â‚¬Å“curlyÃ¢â‚¬Â", "“curlyâ€Â"),
            ("×©×œ×•×", "שלו×"),
            // Latin-1 for Windows-1252, and fix_c1_controls.
            ("\u{93}quoted\u{94}", "“quoted”"),
            ("caf\u{81}", "caf\u{81}"),
            ("caf\u{85}\u{81}", "caf…\u{81}"),
            // utf-8-variants: CESU-8, Java's null, and Python's `$` before a final newline.
            ("CESU: í\u{a0}½í¸\u{80}", "CESU: 😀"),
            ("Java null Ã€\u{80} end", "Java null \u{0} end"),
            ("Ã©À\n", "é\u{0}"),
            ("Ã©í\u{a0}½í¸\n", "é😊"),
            ("Ã©í\u{a0}½í¸\nx", "Ã©í\u{a0}½í¸\nx"),
            ("Ã©í\u{a0}½í¸\u{80}í\u{a0}½", "Ã©í\u{a0}½í¸€í\u{a0}½"),
            ("Ã€\n", "À\n"),
            ("Ã©\n", "é\n"),
            // Text that only looks odd.
            ("ÂÂÂ", "ÂÂÂ"),
            ("├┤", "├┤"),
            ("ÐÐ", "ÐÐ"),
        ];
        for (input, expected) in cases {
            assert_eq!(fix_encoding(input), expected, "input {input:?}");
        }
    }

    #[test]
    fn leaves_ascii_and_good_text_alone() {
        for text in [
            "",
            "plain ascii, even with \u{1a} and ? marks",
            "café naïve Straße",
            "日本語の写真",
            "Привет мир",
            "“quoted” — fine…",
            "¯\\_(ツ)_/¯",
        ] {
            assert_eq!(fix_encoding(text), text);
            assert!(fix_encoding_one_step(text).is_none(), "{text:?}");
        }
    }

    #[test]
    fn decodes_utf8_variants() {
        assert_eq!(decode_utf8_variants(b"a\xc0\x80b").as_deref(), Some("a\0b"));
        assert_eq!(
            decode_utf8_variants(b"\xed\xa0\xbd\xed\xb8\x80").as_deref(),
            Some("😀")
        );
        // A Hangul syllable that starts with 0xED is plain UTF-8.
        assert_eq!(decode_utf8_variants("한".as_bytes()).as_deref(), Some("한"));
        assert_eq!(decode_utf8_variants(b"\xc0\n").as_deref(), Some("\0"));
        // A lone surrogate, a lone 0xC0 and broken UTF-8 raise in Python.
        for broken in [
            &b"\xed\xa0\x80abc"[..],
            b"x\xc0",
            b"\xed\xa0",
            b"\xe2\x82 \xed\xa0",
        ] {
            assert_eq!(decode_utf8_variants(broken), None, "{broken:?}");
        }
    }
}
