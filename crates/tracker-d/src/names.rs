//! Display names: two random words and a number, as the 2021 tracker gave its clients.

use rand::seq::IndexedRandom;

const ADJECTIVES: &[&str] = &[
    "amber",
    "brave",
    "calm",
    "clever",
    "crisp",
    "dusty",
    "eager",
    "fuzzy",
    "gentle",
    "glad",
    "golden",
    "happy",
    "hidden",
    "humble",
    "icy",
    "jolly",
    "kind",
    "lively",
    "lucky",
    "merry",
    "misty",
    "noble",
    "odd",
    "pale",
    "plucky",
    "proud",
    "quick",
    "quiet",
    "rapid",
    "rosy",
    "rusty",
    "shy",
    "silent",
    "silver",
    "sleepy",
    "snowy",
    "solid",
    "sunny",
    "swift",
    "tidy",
    "tiny",
    "vivid",
    "wandering",
    "warm",
    "wild",
    "wise",
    "witty",
    "young",
    "zesty",
    "bold",
];

const NOUNS: &[&str] = &[
    "badger", "beaver", "bison", "crane", "crow", "deer", "dolphin", "eagle", "falcon", "ferret",
    "finch", "fox", "gecko", "heron", "ibex", "jackal", "koala", "lark", "lemur", "lynx", "marten",
    "mole", "moose", "newt", "otter", "owl", "panda", "puffin", "quail", "rabbit", "raven",
    "robin", "salmon", "seal", "shrew", "sparrow", "stoat", "swan", "tapir", "tiger", "toad",
    "trout", "turtle", "viper", "walrus", "weasel", "whale", "wolf", "wren", "yak",
];

/// A fresh display name such as `quiet-otter-512`; not guaranteed unique.
pub fn display_name() -> String {
    let mut rng = rand::rng();
    let adjective = ADJECTIVES.choose(&mut rng).copied().unwrap_or("quiet");
    let noun = NOUNS.choose(&mut rng).copied().unwrap_or("otter");
    let number = rand::Rng::random_range(&mut rng, 0..1000);
    format!("{adjective}-{noun}-{number}")
}

#[cfg(test)]
mod tests {
    #[test]
    fn names_have_three_parts() {
        let name = super::display_name();
        let parts: Vec<&str> = name.split('-').collect();
        assert_eq!(parts.len(), 3, "{name}");
        assert!(parts[2].parse::<u32>().is_ok_and(|n| n < 1000), "{name}");
    }
}
