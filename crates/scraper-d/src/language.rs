//! Language tags for alt texts: whichlang by default (fast), whatlang optionally (more languages).
//!
//! Measured on the benchmark file (scripts/bench-wat.sh): whatlang costs about 45 µs per alt
//! text, because it scores every language profile for every text, which made it two thirds of
//! the extraction time; whichlang (a linear model over hashed n-grams) costs about 1 µs.
//! whichlang knows 16 languages (ara cmn deu eng fra hin ita jpn kor nld por rus spa swe tur
//! vie) and gives the closest of them for any other; whatlang knows 69.

/// Which detector tags candidates.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LanguageDetector {
    /// whichlang: 16 languages, about 1 µs per alt text.
    Whichlang,
    /// whatlang: 69 languages, about 45 µs per alt text.
    Whatlang,
    /// No language tags (a language filter then drops everything).
    Off,
}

/// The ISO 639-3 code of `text`'s most likely language (`eng`, `deu`, `jpn`...), or `None` when
/// the text has no letters, the detector finds nothing, or detection is off.
pub fn detect(detector: LanguageDetector, text: &str) -> Option<&'static str> {
    match detector {
        LanguageDetector::Whichlang => text
            .chars()
            .any(char::is_alphabetic)
            .then(|| whichlang::detect_language(text).three_letter_code()),
        LanguageDetector::Whatlang => whatlang::detect_lang(text).map(|lang| lang.code()),
        LanguageDetector::Off => None,
    }
}

/// Whether `detector` can tag anything `code` (ISO 639-3, lowercase); `Off` tags nothing.
pub fn can_tag(detector: LanguageDetector, code: &str) -> bool {
    match detector {
        LanguageDetector::Whichlang => whichlang::LANGUAGES
            .iter()
            .any(|lang| lang.three_letter_code() == code),
        LanguageDetector::Whatlang => whatlang::Lang::all().iter().any(|lang| lang.code() == code),
        LanguageDetector::Off => false,
    }
}

/// The ISO 639-3 code people usually mean by a two-letter ISO 639-1 code, for error hints.
pub fn three_letter_for(code: &str) -> Option<&'static str> {
    const PAIRS: &[(&str, &str)] = &[
        ("ar", "ara"),
        ("de", "deu"),
        ("en", "eng"),
        ("es", "spa"),
        ("fr", "fra"),
        ("hi", "hin"),
        ("it", "ita"),
        ("ja", "jpn"),
        ("ko", "kor"),
        ("nl", "nld"),
        ("pl", "pol"),
        ("pt", "por"),
        ("ru", "rus"),
        ("sv", "swe"),
        ("tr", "tur"),
        ("uk", "ukr"),
        ("vi", "vie"),
        ("zh", "cmn"),
    ];
    PAIRS
        .iter()
        .find(|(short, _)| *short == code)
        .map(|(_, long)| *long)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_each_detector_can_tag() {
        assert!(can_tag(LanguageDetector::Whichlang, "eng"));
        assert!(can_tag(LanguageDetector::Whichlang, "cmn"));
        assert!(
            !can_tag(LanguageDetector::Whichlang, "pol"),
            "not one of its 16"
        );
        assert!(can_tag(LanguageDetector::Whatlang, "pol"));
        assert!(!can_tag(LanguageDetector::Whatlang, "en"));
        assert!(!can_tag(LanguageDetector::Off, "eng"));
        assert_eq!(three_letter_for("en"), Some("eng"));
        assert_eq!(three_letter_for("zh"), Some("cmn"));
        assert_eq!(three_letter_for("xx"), None);
        for (short, long) in [("de", "deu"), ("ja", "jpn"), ("uk", "ukr")] {
            assert_eq!(three_letter_for(short), Some(long));
            assert!(can_tag(LanguageDetector::Whatlang, long), "{long}");
        }
    }

    #[test]
    fn language_table() {
        let cases: &[(&str, Option<&str>)] = &[
            (
                "A red bicycle leaning against the old wall at sunset",
                Some("eng"),
            ),
            (
                "Ölgemälde einer Berglandschaft mit einem kleinen Dorf",
                Some("deu"),
            ),
            ("Пейзаж с рекой и лесом", Some("rus")),
            ("東京の夜景と高層ビル", Some("jpn")),
            ("12345 67890", None),
        ];
        for detector in [LanguageDetector::Whichlang, LanguageDetector::Whatlang] {
            for (text, expected) in cases {
                assert_eq!(detect(detector, text), *expected, "{detector:?} {text}");
            }
        }
        assert_eq!(detect(LanguageDetector::Off, "A red bicycle"), None);
    }
}
