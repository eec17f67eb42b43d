//! User-supplied labels (nicknames, progress strings, failure reasons) made safe to show.

/// Drops control and format characters, then trims and caps the length of a user-supplied
/// label; empty if nothing visible is left.
///
/// Format characters (Unicode category Cf: bidi overrides such as U+202E, zero-width joiners,
/// tag characters) are invisible and can make a nickname or progress string on the dashboard
/// read as something else. They go before the trim: trimming first kept the space of
/// `"\0 alice"`, stored as `" alice"`, which the dashboard shows as `alice`, and `"\0 \0"` as
/// a blank `" "`.
pub(super) fn clean_label(text: &str, max_chars: usize) -> String {
    let visible: String = text
        .chars()
        .filter(|c| !c.is_control() && !is_format(*c))
        .collect();
    let capped: String = visible.trim().chars().take(max_chars).collect();
    capped.trim_end().to_owned()
}

/// Whether `c` is in Unicode's general category Cf (format), as of Unicode 16.
fn is_format(c: char) -> bool {
    matches!(
        u32::from(c),
        0xAD | 0x600..=0x605
            | 0x61C
            | 0x6DD
            | 0x70F
            | 0x890..=0x891
            | 0x8E2
            | 0x180E
            | 0x200B..=0x200F
            | 0x202A..=0x202E
            | 0x2060..=0x2064
            | 0x2066..=0x206F
            | 0xFEFF
            | 0xFFF9..=0xFFFB
            | 0x110BD
            | 0x110CD
            | 0x13430..=0x1343F
            | 0x1BCA0..=0x1BCA3
            | 0x1D173..=0x1D17A
            | 0xE0001
            | 0xE0020..=0xE007F
    )
}

#[cfg(test)]
mod tests {
    #[test]
    fn labels_are_cleaned() {
        assert_eq!(super::clean_label("  a\u{0}b\nc ", 10), "abc");
        assert_eq!(super::clean_label("abcdef", 3), "abc");
        assert_eq!(
            super::clean_label("\u{202E}gnp.exe\u{200B}\u{2066}x\u{FEFF}\u{E0041}", 20),
            "gnp.exex"
        );
        assert_eq!(super::clean_label("café 東京 😀", 20), "café 東京 😀");
    }

    #[test]
    fn labels_are_trimmed_after_invisible_characters_go() {
        assert_eq!(super::clean_label("\u{0} alice", 64), "alice");
        assert_eq!(super::clean_label("alice \u{0}", 64), "alice");
        assert_eq!(
            super::clean_label("\u{200B} \u{202E}bob\u{FEFF} ", 64),
            "bob"
        );
        assert_eq!(
            super::clean_label("\u{0} \u{0}", 64),
            "",
            "nothing visible is left"
        );
        assert_eq!(super::clean_label("\u{2066}\t\u{3000}", 64), "");
        assert_eq!(super::clean_label("ab cd", 3), "ab", "no blank at the cut");
    }
}
