//! Zero-shot NSFW, underage and animal tags (crawling-at-home-2021.md §3.3), as typed tables.
//!
//! Every prompt carries its class, so no decision depends on an index boundary, and each
//! prompt is its own array element, so no missing comma can fuse two of them (the 2021 bug).
//! Category scores follow 2021: the top two prompts of a list by cosine (the same order as
//! the softmax of `100 × cosine`). The caption keyword test is case-insensitive and matches
//! whole words only (2021 used a case-sensitive substring test, so "Kidney" matched `kid`).
//!
//! **Policy** (after the similarity threshold): a pair whose top two content prompts are both
//! neutral is kept as `UNLIKELY`; both explicit is `NSFW`, mixed is `UNSURE`. An `NSFW` or
//! `UNSURE` pair is always dropped when a top-two age prompt is a minor or the caption has a
//! minor keyword, or when its top object prompt is an animal (the 2021 rules). Other `NSFW` and
//! `UNSURE` pairs follow `--nsfw-policy`: `tag` keeps them with their tag (the default, as LAION
//! did), `drop-nsfw` drops `NSFW`, `drop-unsure` drops both.

use std::sync::OnceLock;

use regex::Regex;

use crate::backend::Embeddings;

/// Classes of the content list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Content {
    Neutral,
    Explicit,
}

/// Classes of the age list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Age {
    Minor,
    Adult,
}

/// Classes of the object list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Object {
    Thing,
    Animal,
}

/// The LAION-style tag of a kept pair.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NsfwTag {
    Unlikely,
    Unsure,
    Nsfw,
    /// Tagging was turned off (`--tags off`).
    Untagged,
}

/// Whether the zero-shot tags run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum TagMode {
    /// Tag every pair and apply the drop rules (the default).
    On,
    /// No tags and no tag-based drops (column `NSFW` = `UNTAGGED`): for random-weight test
    /// checkpoints, or when a separate safety model tags the dataset afterwards (LAION-5B).
    Off,
}

/// What happens to pairs tagged NSFW or UNSURE that are not dropped for other reasons.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum NsfwPolicy {
    /// Keep them with their tag (LAION-5B).
    Tag,
    /// Drop NSFW, keep UNSURE with its tag.
    DropNsfw,
    /// Drop NSFW and UNSURE.
    DropUnsure,
}

/// Why a pair above the threshold is dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DropReason {
    /// NSFW or UNSURE with a minor prompt or a minor keyword (always dropped, as in 2021).
    Underage,
    /// NSFW or UNSURE whose top object prompt is an animal (always dropped, as in 2021).
    Animal,
    /// Dropped by the `--nsfw-policy`.
    Policy,
}

pub const CONTENT_PROMPTS: &[(&str, Content)] = &[
    ("a selfie", Content::Neutral),
    ("an illustration", Content::Neutral),
    ("a photo of toys for kids", Content::Neutral),
    ("a puppet", Content::Neutral),
    ("a photo of animals", Content::Neutral),
    ("an advertisement or a logo", Content::Neutral),
    ("a painting", Content::Neutral),
    ("an anime drawing", Content::Neutral),
    ("a fashion photo", Content::Neutral),
    ("a comedy scene", Content::Neutral),
    ("a romantic scene", Content::Neutral),
    ("a thriller scene", Content::Neutral),
    ("an action movie scene", Content::Neutral),
    ("a horror movie scene", Content::Neutral),
    ("a documentary photo", Content::Neutral),
    ("a news photo", Content::Neutral),
    ("an entertainment photo", Content::Neutral),
    ("a talk show", Content::Neutral),
    ("a landscape photo", Content::Neutral),
    ("a product photo", Content::Neutral),
    ("a pornographic photo", Content::Explicit),
    ("an explicit sexual image", Content::Explicit),
    ("a photo of a naked person", Content::Explicit),
    ("nudity", Content::Explicit),
    ("an erotic photo", Content::Explicit),
    ("a hentai drawing", Content::Explicit),
    ("an adult content image", Content::Explicit),
    ("a lingerie photo with explicit content", Content::Explicit),
];

pub const AGE_PROMPTS: &[(&str, Age)] = &[
    ("a photo of a child", Age::Minor),
    ("a photo of a baby", Age::Minor),
    ("a photo of a teenager", Age::Minor),
    ("a photo of a young girl or boy", Age::Minor),
    ("a photo of an adult", Age::Adult),
    ("a photo of a woman", Age::Adult),
    ("a photo of a man", Age::Adult),
    ("a photo of an old person", Age::Adult),
];

pub const OBJECT_PROMPTS: &[(&str, Object)] = &[
    ("an object", Object::Thing),
    ("furniture", Object::Thing),
    ("a building", Object::Thing),
    ("food", Object::Thing),
    ("a vehicle", Object::Thing),
    ("clothing", Object::Thing),
    ("a plant", Object::Thing),
    ("a human", Object::Thing),
    ("a man", Object::Thing),
    ("a woman", Object::Thing),
    ("a group of people", Object::Thing),
    ("a dog", Object::Animal),
    ("a cat", Object::Animal),
    ("a horse", Object::Animal),
    ("a bird", Object::Animal),
    ("a fish", Object::Animal),
    ("an animal", Object::Animal),
];

/// Caption words that mark a minor (whole words, any case).
pub const MINOR_KEYWORDS: &[&str] = &[
    "teen",
    "teens",
    "teenager",
    "teenagers",
    "kid",
    "kids",
    "child",
    "children",
    "baby",
    "babies",
    "minor",
    "minors",
    "underage",
    "schoolgirl",
    "schoolboy",
];

/// Text embeddings of the three prompt lists, computed once at start.
#[derive(Debug, Clone)]
pub struct PromptEmbeddings {
    pub content: Embeddings,
    pub age: Embeddings,
    pub object: Embeddings,
}

/// The outcome for one pair above the threshold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Keep(NsfwTag),
    Drop(DropReason),
}

impl NsfwTag {
    /// LAION's spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            NsfwTag::Unlikely => "UNLIKELY",
            NsfwTag::Unsure => "UNSURE",
            NsfwTag::Nsfw => "NSFW",
            NsfwTag::Untagged => "UNTAGGED",
        }
    }
}

impl DropReason {
    pub fn as_str(self) -> &'static str {
        match self {
            DropReason::Underage => "underage",
            DropReason::Animal => "animal",
            DropReason::Policy => "nsfw_policy",
        }
    }
}

/// Tags an image (a unit vector) with its caption, and applies the policy.
pub fn judge(
    prompts: &PromptEmbeddings,
    image: &[f32],
    caption: &str,
    policy: NsfwPolicy,
) -> Verdict {
    let content = top2(&prompts.content, image).map(|index| CONTENT_PROMPTS[index].1);
    let tag = match content {
        [Content::Neutral, Content::Neutral] => return Verdict::Keep(NsfwTag::Unlikely),
        [Content::Explicit, Content::Explicit] => NsfwTag::Nsfw,
        _ => NsfwTag::Unsure,
    };
    let minor_prompt = top2(&prompts.age, image)
        .iter()
        .any(|index| AGE_PROMPTS[*index].1 == Age::Minor);
    if minor_prompt || has_minor_keyword(caption) {
        return Verdict::Drop(DropReason::Underage);
    }
    if OBJECT_PROMPTS[top2(&prompts.object, image)[0]].1 == Object::Animal {
        return Verdict::Drop(DropReason::Animal);
    }
    match (policy, tag) {
        (NsfwPolicy::Tag, _) | (NsfwPolicy::DropNsfw, NsfwTag::Unsure) => Verdict::Keep(tag),
        _ => Verdict::Drop(DropReason::Policy),
    }
}

/// Whether the caption contains a minor keyword as a whole word, in any case.
pub fn has_minor_keyword(caption: &str) -> bool {
    static PATTERN: OnceLock<Option<Regex>> = OnceLock::new();
    let pattern = PATTERN
        .get_or_init(|| Regex::new(&format!(r"(?i)\b(?:{})\b", MINOR_KEYWORDS.join("|"))).ok());
    // The pattern is a constant; should it ever fail to compile, err on the side of dropping.
    pattern
        .as_ref()
        .is_none_or(|pattern| pattern.is_match(caption))
}

/// Indices of the two prompts most similar to `image` (best first).
fn top2(prompts: &Embeddings, image: &[f32]) -> [usize; 2] {
    let mut best = [(f32::NEG_INFINITY, 0), (f32::NEG_INFINITY, 0)];
    for index in 0..prompts.rows {
        let score: f32 = prompts
            .row(index)
            .iter()
            .zip(image)
            .map(|(a, b)| a * b)
            .sum();
        if score > best[0].0 {
            best[1] = best[0];
            best[0] = (score, index);
        } else if score > best[1].0 {
            best[1] = (score, index);
        }
    }
    [best[0].1, best[1].1]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn prompts_for(
        content_hot: &[(usize, f32)],
        age_hot: usize,
        object_hot: usize,
    ) -> (PromptEmbeddings, Vec<f32>) {
        // One space holds all three lists side by side.
        let (n_c, n_a, n_o) = (
            CONTENT_PROMPTS.len(),
            AGE_PROMPTS.len(),
            OBJECT_PROMPTS.len(),
        );
        let dim = n_c + n_a + n_o;
        let block = |offset: usize, rows: usize| {
            let mut values = vec![0.0; rows * dim];
            for row in 0..rows {
                values[row * dim + offset + row] = 1.0;
            }
            Embeddings { rows, dim, values }
        };
        let mut image = vec![0.0; dim];
        for (index, weight) in content_hot {
            image[*index] = *weight;
        }
        // The runner-up age prompt is of the same class as the best one.
        image[n_c + age_hot] = 0.5;
        image[n_c + age_hot + 1] = 0.4;
        image[n_c + n_a + object_hot] = 0.5;
        (
            PromptEmbeddings {
                content: block(0, n_c),
                age: block(n_c, n_a),
                object: block(n_c + n_a, n_o),
            },
            image,
        )
    }

    #[test]
    fn tables_have_both_classes_and_no_fused_prompts() {
        for prompt in CONTENT_PROMPTS.iter().map(|(text, _)| text) {
            assert!(!prompt.contains(", "), "{prompt}");
        }
        assert!(
            CONTENT_PROMPTS
                .iter()
                .any(|(_, class)| *class == Content::Explicit)
        );
        assert!(AGE_PROMPTS.iter().any(|(_, class)| *class == Age::Minor));
        assert!(
            OBJECT_PROMPTS
                .iter()
                .any(|(_, class)| *class == Object::Animal)
        );
    }

    #[test]
    fn keywords_match_whole_words_in_any_case() {
        for caption in ["Teen party", "KIDS room", "a baby.", "my child's"] {
            assert!(has_minor_keyword(caption), "{caption}");
        }
        for caption in ["Kidney beans", "a steen wall", "babylon", "childhood"] {
            assert!(!has_minor_keyword(caption), "{caption}");
        }
    }

    #[test]
    fn decisions_follow_the_2021_rules_with_classes() {
        let explicit = CONTENT_PROMPTS
            .iter()
            .position(|(_, class)| *class == Content::Explicit)
            .expect("explicit prompt");
        let adult = AGE_PROMPTS
            .iter()
            .position(|(_, c)| *c == Age::Adult)
            .expect("adult");
        let minor = AGE_PROMPTS
            .iter()
            .position(|(_, c)| *c == Age::Minor)
            .expect("minor");
        let thing = 0;
        let animal = OBJECT_PROMPTS
            .iter()
            .position(|(_, c)| *c == Object::Animal)
            .expect("animal");
        let neutral = [(0, 0.9), (1, 0.8)];
        let both = [(explicit, 0.9), (explicit + 1, 0.8)];
        let mixed = [(explicit, 0.9), (0, 0.8)];
        let cases = [
            (
                &neutral[..],
                adult,
                thing,
                "x",
                NsfwPolicy::Tag,
                Verdict::Keep(NsfwTag::Unlikely),
            ),
            (
                &neutral[..],
                minor,
                animal,
                "kid",
                NsfwPolicy::DropUnsure,
                Verdict::Keep(NsfwTag::Unlikely),
            ),
            (
                &both[..],
                adult,
                thing,
                "x",
                NsfwPolicy::Tag,
                Verdict::Keep(NsfwTag::Nsfw),
            ),
            (
                &mixed[..],
                adult,
                thing,
                "x",
                NsfwPolicy::Tag,
                Verdict::Keep(NsfwTag::Unsure),
            ),
            (
                &both[..],
                minor,
                thing,
                "x",
                NsfwPolicy::Tag,
                Verdict::Drop(DropReason::Underage),
            ),
            (
                &mixed[..],
                adult,
                thing,
                "Teen",
                NsfwPolicy::Tag,
                Verdict::Drop(DropReason::Underage),
            ),
            (
                &both[..],
                adult,
                animal,
                "x",
                NsfwPolicy::Tag,
                Verdict::Drop(DropReason::Animal),
            ),
            (
                &both[..],
                adult,
                thing,
                "x",
                NsfwPolicy::DropNsfw,
                Verdict::Drop(DropReason::Policy),
            ),
            (
                &mixed[..],
                adult,
                thing,
                "x",
                NsfwPolicy::DropNsfw,
                Verdict::Keep(NsfwTag::Unsure),
            ),
            (
                &mixed[..],
                adult,
                thing,
                "x",
                NsfwPolicy::DropUnsure,
                Verdict::Drop(DropReason::Policy),
            ),
        ];
        for (content, age, object, caption, policy, expected) in cases {
            let (prompts, image) = prompts_for(content, age, object);
            assert_eq!(
                judge(&prompts, &image, caption, policy),
                expected,
                "{content:?} {age} {object} {caption}"
            );
        }
    }
}
