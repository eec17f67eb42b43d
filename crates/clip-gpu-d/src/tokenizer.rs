//! OpenAI's CLIP tokenizer: text cleanup, byte-level BPE over the 49,408-entry vocabulary,
//! and the 77-token context with start and end tokens.
//!
//! Reference: <https://github.com/openai/CLIP/blob/main/clip/simple_tokenizer.py> and
//! `clip.tokenize(texts, truncate=True)` in `clip/clip.py`.
//! Vocabulary and merges are read from the checkpoint's Hugging Face `tokenizer.json`, whose
//! BPE model holds OpenAI's vocabulary; the algorithm around them is OpenAI's, not Hugging
//! Face's (`CLIPTokenizer` skips ftfy and HTML unescaping, so it is not the reference).
//! The BPE itself is ours rather than the `tokenizers` crate's: it is short, keeps OpenAI's
//! case-insensitive split regex (which `tokenizer.json` loses: "'ſt" splits as `'s`+`t` in
//! OpenAI's code), stops early once 77 tokens are certain, and avoids a C regex dependency.
//! The parity test (tests/parity/tokenizer.rs) measures it against OpenAI's `SimpleTokenizer`.

mod clean;
mod ftfy_tables;
mod mojibake;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::LazyLock;

use regex::Regex;
use serde::Deserialize;

/// Tokens per text, start and end tokens included (OpenAI's `context_length`).
pub const CONTEXT_LENGTH: usize = 77;
const START_TOKEN: &str = "<|startoftext|>";
const END_TOKEN: &str = "<|endoftext|>";
const END_OF_WORD: &str = "</w>";
/// Longest caption prefix that is cleaned and tokenized, in bytes; the rest is ignored.
///
/// Hostile input must not buy unbounded work: ftfy runs over the whole text before the token
/// limit can stop anything. 64 KiB is 32 times the scraper's 2,000-character alt cap (at most
/// 8,000 bytes) and far above any text that yields 77 tokens (76 tokens take a few hundred
/// bytes of ordinary text), so no caption that reaches us from the scraper is cut.
pub const MAX_CAPTION_BYTES: usize = 64 * 1024;
/// Longest word (one match of the split pattern) that goes through BPE, in bytes; the rest of
/// the word is ignored.
///
/// BPE is quadratic in the length of one word. 8,192 bytes hold any word of a 2,000-character
/// alt text (4 bytes per character at most), so ordinary captions keep their tokens exactly;
/// a longer word yields far more than 77 tokens from its first 8,192 bytes anyway.
pub const MAX_WORD_BYTES: usize = 8 * 1024;

/// Errors of loading the tokenizer.
#[derive(Debug, thiserror::Error)]
pub enum TokenizerError {
    #[error("failed to read {path}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("failed to parse {path}")]
    Parse {
        path: PathBuf,
        source: serde_json::Error,
    },
    #[error("tokenizer file {path} is unusable: {reason}")]
    Invalid { path: PathBuf, reason: String },
}

/// OpenAI's `SimpleTokenizer` plus `clip.tokenize`.
#[derive(Debug)]
pub struct Tokenizer {
    encoder: HashMap<String, i64>,
    ranks: HashMap<(String, String), usize>,
    byte_encoder: [char; 256],
    start_id: i64,
    end_id: i64,
}

#[derive(Deserialize)]
struct TokenizerJson {
    model: BpeJson,
}

#[derive(Deserialize)]
struct BpeJson {
    vocab: HashMap<String, i64>,
    merges: Vec<MergeJson>,
}

/// `tokenizers` wrote merges as `"a b"` before 0.20 and as `["a", "b"]` since.
#[derive(Deserialize)]
#[serde(untagged)]
enum MergeJson {
    Joined(String),
    Pair(String, String),
}

impl Tokenizer {
    /// Reads the vocabulary and merges of a Hugging Face `tokenizer.json`.
    pub fn from_file(path: &Path) -> Result<Self, TokenizerError> {
        let text = std::fs::read_to_string(path).map_err(|source| TokenizerError::Io {
            path: path.to_owned(),
            source,
        })?;
        let json: TokenizerJson =
            serde_json::from_str(&text).map_err(|source| TokenizerError::Parse {
                path: path.to_owned(),
                source,
            })?;
        let invalid = |reason: String| TokenizerError::Invalid {
            path: path.to_owned(),
            reason,
        };
        let mut ranks = HashMap::with_capacity(json.model.merges.len());
        for (rank, merge) in json.model.merges.into_iter().enumerate() {
            let pair = match merge {
                MergeJson::Pair(first, second) => (first, second),
                MergeJson::Joined(joined) => match joined.split_once(' ') {
                    Some((first, second)) => (first.to_owned(), second.to_owned()),
                    None => return Err(invalid(format!("merge {joined:?} is not a pair"))),
                },
            };
            ranks.entry(pair).or_insert(rank);
        }
        let encoder = json.model.vocab;
        let start_id = *encoder
            .get(START_TOKEN)
            .ok_or_else(|| invalid(format!("no {START_TOKEN} in vocab")))?;
        let end_id = *encoder
            .get(END_TOKEN)
            .ok_or_else(|| invalid(format!("no {END_TOKEN} in vocab")))?;
        Ok(Self {
            encoder,
            ranks,
            byte_encoder: bytes_to_unicode(),
            start_id,
            end_id,
        })
    }

    pub fn vocab_size(&self) -> usize {
        self.encoder.len()
    }

    /// BPE token ids of `text` without start and end tokens (`SimpleTokenizer.encode`).
    pub fn encode(&self, text: &str) -> Vec<i64> {
        self.encode_up_to(text, usize::MAX)
    }

    /// One context row: start, tokens, end, zero padding; too long texts keep their first 76
    /// tokens and end with the end token (`clip.tokenize(..., truncate=True)`).
    pub fn tokenize(&self, text: &str) -> [i64; CONTEXT_LENGTH] {
        let mut row = [0; CONTEXT_LENGTH];
        row[0] = self.start_id;
        // Only the first CONTEXT_LENGTH - 2 tokens can survive truncation.
        let ids = self.encode_up_to(text, CONTEXT_LENGTH - 2);
        let kept = ids.len().min(CONTEXT_LENGTH - 2);
        row[1..=kept].copy_from_slice(&ids[..kept]);
        row[kept + 1] = self.end_id;
        row
    }

    /// Context rows of many texts, flattened to `[n, CONTEXT_LENGTH]`.
    pub fn tokenize_batch<S: AsRef<str>>(&self, texts: &[S]) -> Vec<i64> {
        texts
            .iter()
            .flat_map(|text| self.tokenize(text.as_ref()))
            .collect()
    }

    /// Encodes until at least `limit` ids exist; later words cannot change earlier ids. Only the
    /// first [`MAX_CAPTION_BYTES`] of `text` and the first [`MAX_WORD_BYTES`] of each word count.
    fn encode_up_to(&self, text: &str, limit: usize) -> Vec<i64> {
        static PATTERN: LazyLock<Regex> = LazyLock::new(|| {
            // Case-insensitive like OpenAI's (`re.IGNORECASE`): "'ſ" matches `'s` by case folding.
            Regex::new(r"(?i)<\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+")
                .expect("valid regex")
        });
        let text = &text[..text.floor_char_boundary(MAX_CAPTION_BYTES)];
        let cleaned = clean::whitespace_clean(&clean::basic_clean(text)).to_lowercase();
        let mut ids = Vec::new();
        for word in PATTERN.find_iter(&cleaned) {
            if ids.len() > limit {
                break;
            }
            let word = word.as_str();
            let word = &word[..word.floor_char_boundary(MAX_WORD_BYTES)];
            if word == START_TOKEN || word == END_TOKEN {
                ids.push(if word == START_TOKEN {
                    self.start_id
                } else {
                    self.end_id
                });
                continue;
            }
            let symbols: String = word
                .bytes()
                .map(|byte| self.byte_encoder[usize::from(byte)])
                .collect();
            for piece in self.bpe(&symbols) {
                // Every byte symbol and every merge result is in the vocabulary.
                if let Some(&id) = self.encoder.get(&piece) {
                    ids.push(id);
                }
            }
        }
        ids
    }

    /// Repeatedly merges the adjacent pair of lowest rank (OpenAI's `bpe`), in O(n log n).
    ///
    /// OpenAI's loop finds the lowest-ranked pair, merges its occurrences left to right, and
    /// starts over: quadratic in the word's length. Here a heap holds every adjacent pair by
    /// (rank, position) and pops them in that order, skipping pairs a merge has changed. That is
    /// the same order of merges: a pair that a merge creates contains the merged token, and a
    /// merge that uses a token was learned after the merge that made it, so the new pair ranks
    /// after the current one, which is finished first, left to right, as OpenAI's loop does.
    /// `bpe_reference` (OpenAI's loop) checks this in the tests.
    fn bpe(&self, token: &str) -> Vec<String> {
        const NONE: usize = usize::MAX;
        let mut symbols: Vec<String> = token.chars().map(String::from).collect();
        if let Some(last) = symbols.last_mut() {
            last.push_str(END_OF_WORD);
        }
        let n_symbols = symbols.len();
        let mut next: Vec<usize> = (1..=n_symbols)
            .map(|index| if index < n_symbols { index } else { NONE })
            .collect();
        let mut previous: Vec<usize> = (0..n_symbols)
            .map(|index| index.checked_sub(1).unwrap_or(NONE))
            .collect();
        let rank_at = |symbols: &[String], next: &[usize], left: usize| {
            let right = next[left];
            (right != NONE)
                .then(|| {
                    self.ranks
                        .get(&(symbols[left].clone(), symbols[right].clone()))
                        .copied()
                })
                .flatten()
        };
        let mut heap = std::collections::BinaryHeap::new();
        for left in 0..n_symbols {
            if let Some(rank) = rank_at(&symbols, &next, left) {
                heap.push(std::cmp::Reverse((rank, left)));
            }
        }
        while let Some(std::cmp::Reverse((rank, left))) = heap.pop() {
            // A merged-away symbol is empty; a changed pair has another rank (or none).
            if symbols[left].is_empty() || rank_at(&symbols, &next, left) != Some(rank) {
                continue;
            }
            let right = next[left];
            let merged = std::mem::take(&mut symbols[right]);
            symbols[left].push_str(&merged);
            next[left] = next[right];
            if next[right] != NONE {
                previous[next[right]] = left;
            }
            if let Some(rank) = rank_at(&symbols, &next, left) {
                heap.push(std::cmp::Reverse((rank, left)));
            }
            let before = previous[left];
            if before != NONE
                && let Some(rank) = rank_at(&symbols, &next, before)
            {
                heap.push(std::cmp::Reverse((rank, before)));
            }
        }
        let mut word = Vec::new();
        let mut index = if n_symbols == 0 { NONE } else { 0 };
        while index != NONE {
            word.push(std::mem::take(&mut symbols[index]));
            index = next[index];
        }
        word
    }

    /// OpenAI's `bpe` as written: the reference for [`bpe`](Self::bpe) in the tests.
    #[cfg(test)]
    fn bpe_reference(&self, token: &str) -> Vec<String> {
        let mut word: Vec<String> = token.chars().map(String::from).collect();
        if let Some(last) = word.last_mut() {
            last.push_str(END_OF_WORD);
        }
        while word.len() > 1 {
            let best = word
                .windows(2)
                .filter_map(|pair| {
                    self.ranks
                        .get(&(pair[0].clone(), pair[1].clone()))
                        .map(|rank| (*rank, pair))
                })
                .min_by_key(|(rank, _)| *rank);
            let Some((_, pair)) = best else { break };
            let (first, second) = (pair[0].clone(), pair[1].clone());
            let mut merged = Vec::with_capacity(word.len());
            let mut index = 0;
            while index < word.len() {
                if index + 1 < word.len() && word[index] == first && word[index + 1] == second {
                    merged.push(format!("{first}{second}"));
                    index += 2;
                } else {
                    merged.push(std::mem::take(&mut word[index]));
                    index += 1;
                }
            }
            word = merged;
        }
        word
    }
}

/// GPT-2's reversible byte-to-character table (`bytes_to_unicode`).
fn bytes_to_unicode() -> [char; 256] {
    let mut table = ['\0'; 256];
    let mut next_extra = 256u32;
    for byte in 0..=255u8 {
        let printable = matches!(byte, b'!'..=b'~' | 0xa1..=0xac | 0xae..=0xff);
        table[usize::from(byte)] = if printable {
            char::from(byte)
        } else {
            let character = char::from_u32(next_extra).unwrap_or('\u{fffd}');
            next_extra += 1;
            character
        };
    }
    table
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A pseudo-random generator for the tests.
    fn next_random(state: &mut u64) -> u64 {
        *state ^= *state << 13;
        *state ^= *state >> 7;
        *state ^= *state << 17;
        *state
    }

    /// A tokenizer over `a`, `b` and `c` with 60 merges learned in order: each merge joins two
    /// tokens that earlier merges made, as BPE training does.
    fn small_tokenizer() -> Tokenizer {
        let mut tokens: Vec<String> = ["a", "b", "c"]
            .iter()
            .flat_map(|letter| [letter.to_string(), format!("{letter}{END_OF_WORD}")])
            .collect();
        let mut ranks = HashMap::new();
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        while ranks.len() < 60 {
            let first = tokens[next_random(&mut state) as usize % tokens.len()].clone();
            let second = tokens[next_random(&mut state) as usize % tokens.len()].clone();
            // A token ending a word is only ever the right half.
            if first.ends_with(END_OF_WORD) || ranks.contains_key(&(first.clone(), second.clone()))
            {
                continue;
            }
            let merged = format!("{first}{second}");
            if tokens.contains(&merged) {
                continue;
            }
            ranks.insert((first, second), ranks.len());
            tokens.push(merged);
        }
        let encoder = tokens
            .into_iter()
            .zip(0..)
            .chain([(START_TOKEN.to_owned(), -1), (END_TOKEN.to_owned(), -2)])
            .collect();
        Tokenizer {
            encoder,
            ranks,
            byte_encoder: bytes_to_unicode(),
            start_id: -1,
            end_id: -2,
        }
    }

    #[test]
    fn bpe_merges_as_openai_does() {
        let tokenizer = small_tokenizer();
        let mut state = 0x2545_f491_4f6c_dd1du64;
        for _ in 0..3_000 {
            let length = next_random(&mut state) as usize % 40;
            let word: String = (0..length)
                .map(|_| ['a', 'b', 'c'][next_random(&mut state) as usize % 3])
                .collect();
            assert_eq!(
                tokenizer.bpe(&word),
                tokenizer.bpe_reference(&word),
                "{word:?}"
            );
        }
        // Runs, where merges overlap.
        for word in ["aaaaaaa", "abababab", "aabbaabbaabb", "ccccccccc", ""] {
            assert_eq!(
                tokenizer.bpe(word),
                tokenizer.bpe_reference(word),
                "{word:?}"
            );
        }
    }

    #[test]
    fn byte_table_matches_gpt2() {
        let table = bytes_to_unicode();
        assert_eq!(table[usize::from(b'a')], 'a');
        assert_eq!(table[0], 'Ā');
        assert_eq!(table[usize::from(b' ')], 'Ġ');
        assert_eq!(table[0xad], '\u{143}');
    }
}
