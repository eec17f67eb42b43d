//! Renders a node's cloud-init user data from `deploy/cloud-init.yaml` and
//! `systemd/scraper-d.service`, and keeps it under Hetzner's 32 KiB `user_data` limit.

use crate::secret::Secret;

/// The template shipped in the repository.
pub const TEMPLATE: &str = include_str!("../../../deploy/cloud-init.yaml");
/// The unit file that the template embeds.
pub const SCRAPER_UNIT: &str = include_str!("../../../systemd/scraper-d.service");
/// Hetzner refuses larger `user_data` (reference §1.2).
pub const MAX_USER_DATA: usize = 32 * 1024;

/// Everything that differs between nodes.
#[derive(Debug, Clone)]
pub struct NodeBootstrap<'a> {
    pub node_name: &'a str,
    pub swarm: &'a str,
    pub nickname: &'a str,
    pub tracker_url: &'a str,
    pub scraper_url: &'a str,
    pub scraper_sha256: &'a str,
    pub enrollment_token: &'a Secret,
}

/// Why user data could not be rendered.
#[derive(Debug, thiserror::Error)]
pub enum BootstrapError {
    #[error(
        "rendered cloud-init user data is {bytes} bytes, over Hetzner's limit of {MAX_USER_DATA}; shorten deploy/cloud-init.yaml"
    )]
    TooLarge { bytes: usize },
    #[error(
        "{field} {value:?} cannot go into cloud-init: it must not contain quotes, backslashes, '$', backticks or line breaks"
    )]
    UnsafeValue { field: &'static str, value: String },
    #[error("the cloud-init template still has a placeholder after rendering: {0}")]
    Unfilled(String),
}

/// Renders the shipped template for one node.
pub fn render(node: &NodeBootstrap<'_>) -> Result<String, BootstrapError> {
    render_template(TEMPLATE, SCRAPER_UNIT, node)
}

/// Renders `template` (with `unit` in place of the `{{SCRAPER_UNIT}}` line) for one node.
pub fn render_template(
    template: &str,
    unit: &str,
    node: &NodeBootstrap<'_>,
) -> Result<String, BootstrapError> {
    let token = node.enrollment_token.expose();
    let values: [(&'static str, &str); 7] = [
        ("NODE_NAME", node.node_name),
        ("SWARM", node.swarm),
        ("NICKNAME", node.nickname),
        ("TRACKER_URL", node.tracker_url),
        ("SCRAPER_URL", node.scraper_url),
        ("SCRAPER_SHA256", node.scraper_sha256),
        ("ENROLLMENT_TOKEN", token),
    ];
    for (field, value) in values {
        if value.is_empty()
            || value
                .chars()
                .any(|c| c.is_control() || "'\"\\$`".contains(c))
        {
            let shown = if field == "ENROLLMENT_TOKEN" {
                "***"
            } else {
                value
            };
            return Err(BootstrapError::UnsafeValue {
                field,
                value: shown.to_owned(),
            });
        }
    }
    let mut out = String::with_capacity(template.len() + unit.len() + 256);
    for line in template.lines() {
        if line.trim() == "{{SCRAPER_UNIT}}" {
            let indent = &line[..line.len() - line.trim_start().len()];
            for unit_line in unit.lines() {
                if !unit_line.is_empty() {
                    out.push_str(indent);
                    out.push_str(unit_line);
                }
                out.push('\n');
            }
            continue;
        }
        let mut rendered = line.to_owned();
        for (field, value) in values {
            rendered = rendered.replace(&format!("{{{{{field}}}}}"), value);
        }
        out.push_str(&rendered);
        out.push('\n');
    }
    if let Some(start) = out.find("{{") {
        let rest: String = out[start..].chars().take(40).collect();
        return Err(BootstrapError::Unfilled(rest));
    }
    if out.len() > MAX_USER_DATA {
        return Err(BootstrapError::TooLarge { bytes: out.len() });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SHA: &str = "abababababababababababababababababababababababababababababababab";

    fn node(token: &Secret) -> NodeBootstrap<'_> {
        NodeBootstrap {
            node_name: "cah-alpha-1",
            swarm: "alpha",
            nickname: "alice",
            tracker_url: "https://tracker.example.org/",
            scraper_url: "https://dl.example.org/scraper-d",
            scraper_sha256: SHA,
            enrollment_token: token,
        }
    }

    #[test]
    fn renders_every_placeholder() {
        let token = Secret::new("enroll-0123");
        let text = render(&node(&token)).expect("renders");
        assert!(text.starts_with("#cloud-config\n"));
        assert!(text.contains("      SCRAPER_NODE_NAME=cah-alpha-1\n"));
        assert!(text.contains("      ExecStart=/usr/local/bin/scraper-d run\n"));
        assert!(text.contains("SCRAPER_ENROLLMENT_TOKEN=enroll-0123"));
        assert!(!text.contains("{{"));
    }

    #[test]
    fn refuses_oversized_and_unsafe() {
        let token = Secret::new("enroll-0123");
        let padding = format!("#cloud-config\n# {}\n", "x".repeat(MAX_USER_DATA));
        match render_template(&padding, "", &node(&token)) {
            Err(BootstrapError::TooLarge { bytes }) => assert!(bytes > MAX_USER_DATA),
            other => panic!("expected TooLarge, got {other:?}"),
        }
        let bad = Secret::new("x'; rm -rf /");
        let error = render(&node(&bad)).expect_err("quote refused");
        assert!(
            error.to_string().contains("ENROLLMENT_TOKEN \"***\""),
            "{error}"
        );
    }
}
