//! Alt text cleanup: HTML entities decoded, control characters removed, whitespace collapsed, length capped.

use std::borrow::Cow;

/// Named entities decoded by [`clean_alt`]: the XML five, the no-break space and the Latin-1 and
/// typographic ones common in alt text. Others stay as written.
const NAMED_ENTITIES: &[(&str, char)] = &[
    ("amp", '&'),
    ("lt", '<'),
    ("gt", '>'),
    ("quot", '"'),
    ("apos", '\''),
    ("nbsp", '\u{a0}'),
    ("copy", '©'),
    ("reg", '®'),
    ("trade", '™'),
    ("hellip", '…'),
    ("mdash", '—'),
    ("ndash", '–'),
    ("lsquo", '‘'),
    ("rsquo", '’'),
    ("ldquo", '“'),
    ("rdquo", '”'),
    ("laquo", '«'),
    ("raquo", '»'),
    ("middot", '·'),
    ("bull", '•'),
    ("deg", '°'),
    ("eacute", 'é'),
    ("egrave", 'è'),
    ("ecirc", 'ê'),
    ("aacute", 'á'),
    ("agrave", 'à'),
    ("acirc", 'â'),
    ("iacute", 'í'),
    ("oacute", 'ó'),
    ("uacute", 'ú'),
    ("ntilde", 'ñ'),
    ("ccedil", 'ç'),
    ("auml", 'ä'),
    ("ouml", 'ö'),
    ("uuml", 'ü'),
    ("Auml", 'Ä'),
    ("Ouml", 'Ö'),
    ("Uuml", 'Ü'),
    ("szlig", 'ß'),
    ("euro", '€'),
    ("pound", '£'),
    ("times", '×'),
];

/// Cleans an alt attribute: entities decoded once (`&amp;amp;` gives `&amp;`), every whitespace
/// run collapsed to one space and trimmed, other control characters removed, then cut to at most
/// `max_chars` characters. Borrows when nothing changes.
pub fn clean_alt(raw: &str, max_chars: usize) -> Cow<'_, str> {
    let is_clean = !raw.contains('&')
        && !raw.starts_with(' ')
        && !raw.ends_with(' ')
        && !raw.as_bytes().windows(2).any(|pair| pair == b"  ")
        && !raw.chars().any(|character| {
            character.is_control() || (character.is_whitespace() && character != ' ')
        });
    if is_clean && raw.len() <= max_chars {
        return Cow::Borrowed(raw);
    }
    let mut out = String::with_capacity(raw.len());
    let mut pending_space = false;
    let mut n_chars = 0usize;
    let mut push = |character: char, out: &mut String| {
        if character.is_whitespace() {
            pending_space = !out.is_empty();
            return;
        }
        if character.is_control() || n_chars >= max_chars {
            return;
        }
        if pending_space {
            if n_chars + 1 >= max_chars {
                n_chars = max_chars;
                return;
            }
            out.push(' ');
            n_chars += 1;
            pending_space = false;
        }
        out.push(character);
        n_chars += 1;
    };
    let mut rest = raw;
    while let Some(amp) = rest.find('&') {
        rest[..amp]
            .chars()
            .for_each(|character| push(character, &mut out));
        let after = &rest[amp + 1..];
        match decode_entity(after) {
            Some((character, len)) => {
                push(character, &mut out);
                rest = &after[len..];
            }
            None => {
                push('&', &mut out);
                rest = after;
            }
        }
    }
    rest.chars().for_each(|character| push(character, &mut out));
    Cow::Owned(out)
}

/// Windows-1252's characters for the code points 0x80 to 0x9F, which a numeric reference there
/// means in HTML (<https://html.spec.whatwg.org/multipage/parsing.html#numeric-character-reference-end-state>);
/// the five that Windows-1252 leaves unmapped stay the C1 controls they name.
const WINDOWS_1252_C1: [char; 32] = [
    '€', '\u{81}', '‚', 'ƒ', '„', '…', '†', '‡', 'ˆ', '‰', 'Š', '‹', 'Œ', '\u{8d}', 'Ž', '\u{8f}',
    '\u{90}', '‘', '’', '“', '”', '•', '–', '—', '˜', '™', 'š', '›', 'œ', '\u{9d}', 'ž', 'Ÿ',
];

/// Decodes the entity at the start of `text` (just after `&`): returns the character and the
/// bytes used, `;` included.
fn decode_entity(text: &str) -> Option<(char, usize)> {
    // Entities are ASCII: the `;` is looked for in bytes, since byte 12 may fall inside a
    // multi-byte character; a `;` byte is always a character boundary in UTF-8.
    let semicolon = text.bytes().take(12).position(|byte| byte == b';')?;
    let name = &text[..semicolon];
    let character = if let Some(number) = name.strip_prefix('#') {
        let code = match number.strip_prefix(['x', 'X']) {
            Some(hex) => u32::from_str_radix(hex, 16).ok()?,
            None => number.parse::<u32>().ok()?,
        };
        match code {
            0x80..=0x9f => WINDOWS_1252_C1[(code - 0x80) as usize],
            _ => char::from_u32(code).unwrap_or('\u{fffd}'),
        }
    } else {
        NAMED_ENTITIES
            .iter()
            .find(|(entity, _)| *entity == name)
            .map(|(_, character)| *character)?
    };
    Some((character, semicolon + 1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cleanup_table() {
        let cases: &[(&str, usize, &str)] = &[
            ("a red bicycle", 2000, "a red bicycle"),
            ("  a \t red\n\nbicycle  ", 2000, "a red bicycle"),
            ("Fish &amp; chips", 2000, "Fish & chips"),
            (
                "&lt;b&gt; &quot;x&quot; &#39;y&#x27;",
                2000,
                "<b> \"x\" 'y'",
            ),
            ("&amp;amp; stays once", 2000, "&amp; stays once"),
            ("AT&T and &unknown; and &", 2000, "AT&T and &unknown; and &"),
            ("caf&eacute;&nbsp;au lait", 2000, "café au lait"),
            ("bell\u{7}\u{0}ring", 2000, "bellring"),
            ("x&#0;y&#xD800;z", 2000, "x\u{0}y\u{fffd}z"),
            ("東京の夜景", 2000, "東京の夜景"),
            ("abcdef", 3, "abc"),
            ("ab  cd", 3, "ab"),
            ("ab cd", 4, "ab c"),
            ("Sunrise 🌅 over", 9, "Sunrise 🌅"),
        ];
        for (raw, max, expected) in cases {
            let got = clean_alt(raw, *max);
            let expected = expected.replace('\u{0}', "");
            assert_eq!(got, expected, "{raw:?}");
        }
        assert!(matches!(clean_alt("clean text", 2000), Cow::Borrowed(_)));
    }

    #[test]
    fn entities_next_to_multibyte_text() {
        // Byte 12 after the `&` falls inside a multi-byte character in each of these.
        let cases: &[(&str, &str)] = &[
            ("Tom &amp; Jerry – été", "Tom & Jerry – été"),
            ("&nbsp;Москва ночью", "Москва ночью"),
            ("caf&eacute;東京 x", "café東京 x"),
            ("a &amp;東京東京東京東京", "a &東京東京東京東京"),
            ("&東京;", "&東京;"),
            ("x &#x1F305;🌅", "x 🌅🌅"),
        ];
        for (raw, expected) in cases {
            assert_eq!(clean_alt(raw, 2000), *expected, "{raw:?}");
        }
    }

    #[test]
    fn numeric_references_in_the_c1_range_are_windows_1252() {
        let cases: &[(&str, &str)] = &[
            ("Don&#146;t stop", "Don’t stop"),
            ("x&#150;y&#133;z", "x–y…z"),
            ("&#128;5 &#x80;5 &#X9f;", "€5 €5 Ÿ"),
            (
                "&#130;&#131;&#132;&#134;&#135;&#136;&#137;&#138;&#139;&#140;&#142;",
                "‚ƒ„†‡ˆ‰Š‹ŒŽ",
            ),
            (
                "&#145;&#147;&#148;&#149;&#151;&#152;&#153;&#154;&#155;&#156;&#158;&#159;",
                "‘“”•—˜™š›œžŸ",
            ),
            // The five code points Windows-1252 leaves unmapped stay controls, then go.
            ("a&#129;b&#141;c&#143;d&#144;e&#157;f", "abcdef"),
            // Just outside the range: DEL (removed), a no-break space and a Latin-1 letter.
            ("a&#127;b&#160;c&#233;", "ab cé"),
        ];
        for (raw, expected) in cases {
            assert_eq!(clean_alt(raw, 2000), *expected, "{raw:?}");
        }
    }
}
