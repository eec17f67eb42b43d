//! OpenAI's text cleanup before BPE: `basic_clean` (ftfy, HTML unescape twice, strip) and
//! `whitespace_clean`, from <https://github.com/openai/CLIP/blob/main/clip/simple_tokenizer.py>.
//!
//! ftfy has no Rust port. This follows `ftfy.fix_text` 6.3 with its default settings, step by
//! step and until nothing changes; mojibake repair (`fix_encoding`) is in `mojibake.rs`.
//! `fix_surrogates` has nothing to do: Rust strings hold no surrogates.

use std::sync::LazyLock;

use regex::Regex;
use unicode_normalization::UnicodeNormalization;

use super::mojibake;

/// `ftfy.fix_text`, then Python's `html.unescape` twice, then `str.strip`.
pub(super) fn basic_clean(text: &str) -> String {
    let fixed = fix_text(text);
    let unescaped = html_unescape(&html_unescape(&fixed));
    python_strip(&unescaped).to_owned()
}

/// `re.sub(r'\s+', ' ', text).strip()` with the `regex` module's Unicode `\s`.
pub(super) fn whitespace_clean(text: &str) -> String {
    static WHITESPACE: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"\s+").expect("valid regex"));
    python_strip(&WHITESPACE.replace_all(text, " ")).to_owned()
}

/// ftfy splits at line ends and fixes each line on its own; a `<` turns HTML unescaping off
/// for that line and all later ones (`fix_text`).
fn fix_text(text: &str) -> String {
    let mut unescape = true;
    let mut out = String::with_capacity(text.len());
    for segment in text.split_inclusive('\n') {
        if segment.contains('<') {
            unescape = false;
        }
        out.push_str(&fix_segment(segment, unescape));
    }
    out
}

/// `ftfy.fix_and_explain`: apply the fixers until the text is stable.
fn fix_segment(segment: &str, unescape: bool) -> String {
    let mut text = segment.to_owned();
    loop {
        let original = text.clone();
        if unescape {
            text = ftfy_unescape_html(&text);
        }
        text = mojibake::fix_encoding(&text);
        let fixed: String = text
            .replace("\r\n", "\n")
            .chars()
            .flat_map(|character| fix_char(character).chars().collect::<Vec<_>>())
            .collect();
        let fixed = remove_terminal_escapes(&fixed);
        let fixed: String = fixed
            .chars()
            .filter(|character| !is_control_char(*character))
            .collect();
        text = fixed.nfc().collect();
        if text == original {
            return text;
        }
    }
}

/// The per-character fixers, in ftfy's order: C1 controls (as Windows-1252), Latin ligatures,
/// full and half width, curly quotes, line breaks.
fn fix_char(character: char) -> String {
    let character = match u32::from(character) {
        code @ 0x80..=0x9f => windows_1252(code),
        _ => character,
    };
    let replaced = match character {
        'Ĳ' => "IJ",
        'ĳ' => "ij",
        'ŉ' => "ʼn",
        'Ǳ' => "DZ",
        'ǲ' => "Dz",
        'ǳ' => "dz",
        'Ǆ' => "DŽ",
        'ǅ' => "Dž",
        'ǆ' => "dž",
        'Ǉ' => "LJ",
        'ǈ' => "Lj",
        'ǉ' => "lj",
        'Ǌ' => "NJ",
        'ǋ' => "Nj",
        'ǌ' => "nj",
        'ﬀ' => "ff",
        'ﬁ' => "fi",
        'ﬂ' => "fl",
        'ﬃ' => "ffi",
        'ﬄ' => "ffl",
        'ﬅ' => "ſt",
        'ﬆ' => "st",
        '\u{3000}' => " ",
        '\u{ff01}'..='\u{ffef}' => return character.to_string().nfkc().collect(),
        '\u{02bc}' | '\u{2018}'..='\u{201b}' => "'",
        '\u{201c}'..='\u{201f}' => "\"",
        '\r' | '\u{2028}' | '\u{2029}' | '\u{85}' => "\n",
        other => return other.to_string(),
    };
    replaced.to_owned()
}

/// ftfy's "sloppy" Windows-1252: the five undefined bytes stay Latin-1.
fn windows_1252(code: u32) -> char {
    const HIGH: [char; 32] = [
        '€', '\u{81}', '‚', 'ƒ', '„', '…', '†', '‡', 'ˆ', '‰', 'Š', '‹', 'Œ', '\u{8d}', 'Ž',
        '\u{8f}', '\u{90}', '‘', '’', '“', '”', '•', '–', '—', '˜', '™', 'š', '›', 'œ', '\u{9d}',
        'ž', 'Ÿ',
    ];
    HIGH[(code - 0x80) as usize]
}

/// ftfy's `CONTROL_CHARS`.
fn is_control_char(character: char) -> bool {
    matches!(u32::from(character), 0x00..=0x08 | 0x0b | 0x0e..=0x1f | 0x7f | 0x206a..=0x206f | 0xfeff | 0xfff9..=0xfffc)
}

fn remove_terminal_escapes(text: &str) -> String {
    static ANSI: LazyLock<Regex> =
        LazyLock::new(|| Regex::new("\x1b\\[((?:\\d|;)*)([a-zA-Z])").expect("valid regex"));
    ANSI.replace_all(text, "").into_owned()
}

/// ftfy's own `unescape_html`: only `&name;` (HTML5, or an upper-cased lowercase name) and
/// numeric references with their semicolon.
fn ftfy_unescape_html(text: &str) -> String {
    static ENTITY: LazyLock<Regex> =
        LazyLock::new(|| Regex::new(r"&#?[0-9A-Za-z]{1,24};").expect("valid regex"));
    ENTITY
        .replace_all(text, |captures: &regex::Captures<'_>| {
            let reference = &captures[0];
            if let Some(value) = entity(reference) {
                return value.to_owned();
            }
            if reference.starts_with("&#") {
                let unescaped = html_unescape(reference);
                return if unescaped.contains(';') {
                    reference.to_owned()
                } else {
                    unescaped
                };
            }
            // `&NTILDE;` decodes as "Ñ" when `&ntilde;` is an entity and `&NTILDE` means nothing.
            let lower = reference.to_lowercase();
            if reference != lower
                && reference == reference.to_uppercase()
                && html_unescape(reference) == reference
                && let Some(value) = entity(&lower)
            {
                return value.to_uppercase();
            }
            reference.to_owned()
        })
        .into_owned()
}

/// Python's `html.unescape` (HTML5 character references, as `html/__init__.py` does them).
pub(super) fn html_unescape(text: &str) -> String {
    static REFERENCE: LazyLock<Regex> = LazyLock::new(|| {
        Regex::new(r"&(#[0-9]+;?|#[xX][0-9a-fA-F]+;?|[^\t\n\x0C <&#;]{1,32};?)")
            .expect("valid regex")
    });
    if !text.contains('&') {
        return text.to_owned();
    }
    REFERENCE
        .replace_all(text, |captures: &regex::Captures<'_>| {
            replace_reference(&captures[1])
        })
        .into_owned()
}

fn replace_reference(reference: &str) -> String {
    if let Some(number) = reference.strip_prefix('#') {
        let (digits, radix) = match number.strip_prefix(['x', 'X']) {
            Some(hex) => (hex, 16),
            None => (number, 10),
        };
        let digits = digits.trim_end_matches(';');
        let code = u32::from_str_radix(digits, radix).unwrap_or(u32::MAX);
        return numeric_reference(code);
    }
    if let Some(value) = entity(&format!("&{reference}")) {
        return value.to_owned();
    }
    // The longest prefix that is an entity (legacy names without `;`), as the standard says.
    let boundaries: Vec<usize> = reference
        .char_indices()
        .map(|(index, _)| index)
        .skip(2)
        .collect();
    for &end in boundaries.iter().rev() {
        if let Some(value) = entity(&format!("&{}", &reference[..end])) {
            return format!("{value}{}", &reference[end..]);
        }
    }
    format!("&{reference}")
}

fn numeric_reference(code: u32) -> String {
    match code {
        0x00 => "\u{fffd}".to_owned(),
        0x0d => "\r".to_owned(),
        0x80..=0x9f => windows_1252(code).to_string(),
        0xd800..=0xdfff => "\u{fffd}".to_owned(),
        0x01..=0x08 | 0x0e..=0x1f | 0x7f | 0xfdd0..=0xfdef | 0x0b => String::new(),
        code if code & 0xfffe == 0xfffe && code <= 0x10ffff => String::new(),
        code => char::from_u32(code)
            .map_or_else(|| "\u{fffd}".to_owned(), |character| character.to_string()),
    }
}

fn entity(reference: &str) -> Option<&'static str> {
    htmlize::ENTITIES
        .get(reference.as_bytes())
        .and_then(|value| std::str::from_utf8(value).ok())
}

/// Python's `str.strip()`: Unicode white space plus the four ASCII separators.
fn python_strip(text: &str) -> &str {
    text.trim_matches(|character: char| {
        character.is_whitespace() || ('\x1c'..='\x1f').contains(&character)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cleans_like_openai() {
        let cases = [
            ("  a&amp;amp;b  ", "a&b"),
            ("&lt;b&gt;", "<b>"),
            ("caf&eacute; &#233; &#x41;", "café é A"),
            ("“curly” ‘quotes’", "\"curly\" 'quotes'"),
            ("ﬁne ｆｕｌｌ\u{3000}width", "fine full width"),
            ("\u{93}c1\u{94}", "\"c1\""),
            ("ctrl\u{7}\u{feff}chars", "ctrlchars"),
            ("&ampx &notit; &NTILDE;", "&x ¬it; Ñ"),
            // Mojibake repair runs after ftfy's HTML unescaping and before the other fixers.
            ("cafÃ&copy; â€œquotesâ€\u{9d}", "café \"quotes\""),
            ("Ã©\u{85} &Atilde;&copy;", "é… é"),
            ("ï¬\u{81}ne", "fine"),
        ];
        for (input, expected) in cases {
            assert_eq!(basic_clean(input), expected, "input {input:?}");
        }
        assert_eq!(whitespace_clean(" a \t\n b\u{a0}c "), "a b c");
    }
}
