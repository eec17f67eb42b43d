//! Token ids equal OpenAI's `clip.tokenize(texts, truncate=True)` on thousands of strings.

use clip_gpu_d::Tokenizer;
use clip_gpu_d::tokenizer::CONTEXT_LENGTH;
use serde::Deserialize;

use crate::support;

#[derive(Deserialize)]
struct Case {
    text: String,
    ids: Vec<i64>,
    mojibake: bool,
}

#[test]
fn token_ids_match_openai_simple_tokenizer() {
    let dir = tempfile::tempdir().expect("tempdir");
    let reference = dir.path().join("tokens.json");
    support::run_python(
        &support::test_script("tokenizer_reference.py"),
        &[reference.as_os_str(), "3000".as_ref()],
    );
    let cases: Vec<Case> =
        serde_json::from_slice(&std::fs::read(&reference).expect("read")).expect("parse");
    let tokenizer =
        Tokenizer::from_file(&support::tiny_model().join("tokenizer.json")).expect("tokenizer");
    assert_eq!(tokenizer.vocab_size(), 49408);
    let mut mismatches = Vec::new();
    let mut mojibake_mismatches = 0;
    let n_mojibake = cases.iter().filter(|case| case.mojibake).count();
    for case in &cases {
        assert_eq!(case.ids.len(), CONTEXT_LENGTH);
        let ours = tokenizer.tokenize(&case.text);
        if ours[..] != case.ids[..] {
            mojibake_mismatches += usize::from(case.mojibake);
            mismatches.push((case.text.clone(), ours.to_vec(), case.ids.clone()));
        }
    }
    for (text, ours, theirs) in mismatches.iter().take(5) {
        eprintln!("mismatch for {text:?}:\n  ours   {ours:?}\n  openai {theirs:?}");
    }
    eprintln!(
        "tokenizer parity: {} mismatches out of {} strings, {mojibake_mismatches} of them among the {n_mojibake} strings that ftfy repairs as mojibake",
        mismatches.len(),
        cases.len()
    );
    assert!(
        mismatches.is_empty(),
        "{} strings tokenize differently",
        mismatches.len()
    );
    // The script appends 60 strings of mojibake; without ftfy's `fix_encoding` most of them
    // tokenize differently.
    assert!(
        n_mojibake >= 50,
        "only {n_mojibake} strings exercise mojibake repair"
    );
}

#[test]
fn known_ids_from_the_reference() {
    let tokenizer =
        Tokenizer::from_file(&support::tiny_model().join("tokenizer.json")).expect("tokenizer");
    assert_eq!(
        tokenizer.encode("a photo of a cat"),
        [320, 1125, 539, 320, 2368]
    );
    assert_eq!(tokenizer.encode("a diagram"), [320, 22697]);
    let long = tokenizer.tokenize(&"a ".repeat(500));
    assert_eq!(long[0], 49406);
    assert_eq!(long[CONTEXT_LENGTH - 1], 49407);
    let empty = tokenizer.tokenize("");
    assert_eq!(&empty[..3], &[49406, 49407, 0]);
}

#[test]
fn huge_hostile_captions_are_bounded() {
    let tokenizer =
        Tokenizer::from_file(&support::tiny_model().join("tokenizer.json")).expect("tokenizer");
    // One 10 MB word of letters, varied so that BPE finds a new pair to merge at every step.
    let word: String = (0..10_000_000u64)
        .map(|index| char::from(b'a' + ((index * index + index / 7) % 26) as u8))
        .collect();
    let row = tokenizer.tokenize(&word);
    assert_eq!(row[0], 49406);
    assert_eq!(row[CONTEXT_LENGTH - 1], 49407, "truncated to the context");
    assert!(row.iter().all(|id| *id != 0), "no padding: {row:?}");
    // The first 76 tokens do not depend on where the word is cut.
    assert_eq!(row, tokenizer.tokenize(&word[..2_000]));
    let ids = tokenizer.encode(&word);
    assert!(
        (76..=clip_gpu_d::tokenizer::MAX_WORD_BYTES).contains(&ids.len()),
        "{} ids",
        ids.len()
    );
    // Many words over 10 MB: only the first MAX_CAPTION_BYTES are cleaned.
    let words = "caption ".repeat(1_300_000);
    let row = tokenizer.tokenize(&words);
    assert_eq!(
        row[1..CONTEXT_LENGTH - 1],
        [tokenizer.encode("caption")[0]; 75]
    );
    assert_eq!(
        tokenizer.encode(&words).len(),
        clip_gpu_d::tokenizer::MAX_CAPTION_BYTES / "caption ".len()
    );
}
