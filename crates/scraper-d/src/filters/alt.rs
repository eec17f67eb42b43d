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

/// Decodes the entity at the start of `text` (just after `&`): returns the character and the
/// bytes used, `;` included.
fn decode_entity(text: &str) -> Option<(char, usize)> {
    let semicolon = text.get(..text.len().min(12))?.find(';')?;
    let name = &text[..semicolon];
    let character = if let Some(number) = name.strip_prefix('#') {
        let code = match number.strip_prefix(['x', 'X']) {
            Some(hex) => u32::from_str_radix(hex, 16).ok()?,
            None => number.parse::<u32>().ok()?,
        };
        char::from_u32(code).unwrap_or('\u{fffd}')
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
}
