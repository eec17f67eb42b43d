//! The value parser of every boolean flag: its `SCRAPER_*` variable takes what people write in
//! env files (`1`/`0`, `yes`/`no`, `on`/`off`, `true`/`false`, any case), and an empty one is
//! as if unset.

use std::ffi::OsStr;

use clap::builder::{BoolishValueParser, PossibleValue, TypedValueParser};

/// What `--help` says below the flags of every command that has boolean flags.
pub(crate) const BOOLEAN_VARIABLES_HELP: &str = "Boolean variables (SCRAPER_EXIT_WHEN_IDLE, \
    SCRAPER_ALLOW_PRIVATE_ADDRESSES, ...) take 1/0, yes/no, on/off or true/false, in any case; \
    an empty one is as if unset.";

/// Clap's boolish parser, with an empty value standing for the flag's default.
#[derive(Debug, Clone)]
pub(crate) struct EnvBool {
    default: bool,
    boolish: BoolishValueParser,
}

impl EnvBool {
    /// For a flag that is off unless given (`--exit-when-idle`).
    pub(crate) fn off() -> Self {
        EnvBool {
            default: false,
            boolish: BoolishValueParser::new(),
        }
    }

    /// For a flag that is on unless set to a false value (`--tracker-dedup false`).
    pub(crate) fn on() -> Self {
        EnvBool {
            default: true,
            boolish: BoolishValueParser::new(),
        }
    }
}

impl TypedValueParser for EnvBool {
    type Value = bool;

    fn parse_ref(
        &self,
        command: &clap::Command,
        arg: Option<&clap::Arg>,
        value: &OsStr,
    ) -> Result<bool, clap::Error> {
        if value.is_empty() {
            return Ok(self.default);
        }
        self.boolish.parse_ref(command, arg, value)
    }

    fn possible_values(&self) -> Option<Box<dyn Iterator<Item = PossibleValue> + '_>> {
        self.boolish.possible_values()
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Debug, Parser)]
    struct Flags {
        #[arg(long, value_parser = EnvBool::off())]
        off: bool,
        #[arg(long, value_parser = EnvBool::on(), default_value_t = true, action = clap::ArgAction::Set)]
        on: bool,
    }

    #[test]
    fn usual_spellings_parse_and_empty_is_the_default() {
        let cases: &[(&str, Option<bool>)] = &[
            ("1", Some(true)),
            ("0", Some(false)),
            ("yes", Some(true)),
            ("No", Some(false)),
            ("ON", Some(true)),
            ("off", Some(false)),
            ("true", Some(true)),
            ("False", Some(false)),
            ("maybe", None),
            ("2", None),
        ];
        for (text, expected) in cases {
            let got = Flags::try_parse_from(["test", "--on", text]).map(|flags| flags.on);
            assert_eq!(got.ok(), *expected, "--on {text}");
        }
        let flags = Flags::try_parse_from(["test", "--on", ""]).expect("empty parses");
        assert!(flags.on, "empty is the default, on");
        let flags = Flags::try_parse_from(["test", "--off"]).expect("a bare flag parses");
        assert!(flags.off);
        let flags = Flags::try_parse_from(["test"]).expect("nothing parses");
        assert!(!flags.off && flags.on);
    }
}
