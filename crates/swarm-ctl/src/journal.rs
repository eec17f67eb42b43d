//! What one run changed in the cloud, so that an interrupted run (Ctrl-C, SIGTERM, SIGHUP) can
//! say what it left behind and how to finish.

use std::sync::Mutex;

use crate::cli::Command;
use crate::shutdown::StopSignal;

/// The servers this run created or sent a delete for, in order.
#[derive(Debug, Default)]
pub struct Journal {
    entries: Mutex<Entries>,
}

#[derive(Debug, Default)]
struct Entries {
    created: Vec<String>,
    deleted: Vec<String>,
}

impl Journal {
    /// Records a server this run created (billed from now on).
    pub fn created(&self, name: &str) {
        self.with(|entries| entries.created.push(name.to_owned()));
    }

    /// Records a server this run sent a delete for.
    pub fn deleted(&self, name: &str) {
        self.with(|entries| entries.deleted.push(name.to_owned()));
    }

    fn with(&self, change: impl FnOnce(&mut Entries)) {
        // A panic elsewhere cannot leave the lists half-written: each change is one push.
        let mut entries = self
            .entries
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        change(&mut entries);
    }

    /// One message for a `command` stopped by `signal`: what it changed and the command that
    /// finishes it.
    pub fn interrupted(&self, command: &Command, signal: StopSignal) -> String {
        let changed = self
            .changes()
            .unwrap_or_else(|| "nothing was created or deleted".to_owned());
        format!("interrupted by {signal}: {changed}; {}", next_step(command))
    }

    /// For a `command` that failed: what it had changed and the command that finishes it, or
    /// `None` when it changed nothing.
    pub fn failed(&self, command: &Command) -> Option<String> {
        self.changes().map(|changed| {
            format!(
                "this run {changed} before it failed; {}",
                next_step(command)
            )
        })
    }

    /// What this run created and sent the delete for, `None` when nothing.
    pub fn changes(&self) -> Option<String> {
        let entries = self
            .entries
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut parts = Vec::new();
        if !entries.created.is_empty() {
            parts.push(format!(
                "created {} (they stay and are billed)",
                entries.created.join(", ")
            ));
        }
        if !entries.deleted.is_empty() {
            parts.push(format!(
                "sent the delete for {} (they go away on their own)",
                entries.deleted.join(", ")
            ));
        }
        (!parts.is_empty()).then(|| parts.join("; "))
    }
}

/// The command that finishes what `command` started.
fn next_step(command: &Command) -> String {
    match command {
        Command::Up(up) => format!(
            "`swarm-ctl up {}` again finishes it: it counts the nodes there are and adopts any whose create went through",
            up.count
        ),
        Command::Down(_) => "`swarm-ctl down --yes` again deletes the rest".to_owned(),
        Command::Heal(_) => {
            "`swarm-ctl status` shows the swarm, `swarm-ctl heal` again goes on".to_owned()
        }
        Command::Status | Command::Logs(_) | Command::Restart => {
            "`swarm-ctl status` shows the swarm".to_owned()
        }
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;
    use crate::cli::Args;

    fn command(argv: &[&str]) -> Command {
        Args::try_parse_from(argv).expect("args").command
    }

    #[test]
    fn says_what_changed_and_how_to_finish() {
        let journal = Journal::default();
        assert_eq!(
            journal.interrupted(&command(&["swarm-ctl", "down"]), StopSignal::Hangup),
            "interrupted by SIGHUP: nothing was created or deleted; `swarm-ctl down --yes` again deletes the rest"
        );
        journal.created("cah-a-3");
        journal.created("cah-a-4");
        journal.deleted("cah-a-1");
        let text = journal.interrupted(&command(&["swarm-ctl", "up", "5"]), StopSignal::Interrupt);
        assert!(
            text.starts_with(
                "interrupted by SIGINT: created cah-a-3, cah-a-4 (they stay and are billed); sent the delete for cah-a-1"
            ) && text.contains("`swarm-ctl up 5` again"),
            "{text}"
        );
    }
}
