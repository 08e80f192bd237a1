//! Prometheus text exposition of the health state, served on a local
//! address for the site's monitoring.

use std::fmt::Write;

use crate::health::engine::{CheckStatus, State};

const STATES: [State; 4] = [
    State::Healthy,
    State::Degraded,
    State::Failed,
    State::Unknown,
];

/// Escapes a label value as the exposition format requires.
fn label(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

pub fn render(
    node: &str,
    role: &str,
    overall: State,
    checks: &[CheckStatus],
    findings: usize,
) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "# HELP owui_node_info The node and its role.\n# TYPE owui_node_info gauge"
    );
    let _ = writeln!(
        out,
        "owui_node_info{{node=\"{}\",role=\"{}\"}} 1",
        label(node),
        label(role)
    );
    let _ = writeln!(
        out,
        "# HELP owui_overall_state 1 for the node's overall state.\n# TYPE owui_overall_state gauge"
    );
    for s in STATES {
        let _ = writeln!(
            out,
            "owui_overall_state{{state=\"{}\"}} {}",
            s.as_str(),
            u8::from(s == overall)
        );
    }
    let _ = writeln!(
        out,
        "# HELP owui_check_state 1 for each check's current state.\n# TYPE owui_check_state gauge"
    );
    for c in checks {
        for s in STATES {
            let _ = writeln!(
                out,
                "owui_check_state{{check=\"{}\",kind=\"{}\",state=\"{}\"}} {}",
                label(&c.name),
                label(&c.kind),
                s.as_str(),
                u8::from(s == c.state)
            );
        }
    }
    let _ = writeln!(
        out,
        "# HELP owui_check_duration_seconds How long each check's last run took.\n# TYPE owui_check_duration_seconds gauge"
    );
    for c in checks {
        let _ = writeln!(
            out,
            "owui_check_duration_seconds{{check=\"{}\"}} {:.3}",
            label(&c.name),
            c.duration_ms as f64 / 1000.0
        );
    }
    let _ = writeln!(
        out,
        "# HELP owui_hardening_findings Deviations from the secure defaults.\n# TYPE owui_hardening_findings gauge\nowui_hardening_findings {findings}"
    );
    // GPU gauges from the last GPU check in this process (GPU roles only).
    out.push_str(&crate::gpu::health::metrics_text());
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::SystemTime;

    #[test]
    fn one_series_per_state_and_escaped_labels() {
        let c = CheckStatus::new("disk:/var/lib/\"x\"", "disk", SystemTime::UNIX_EPOCH);
        let text = render("n1", "db", State::Unknown, &[c], 2);
        assert!(text.contains("owui_node_info{node=\"n1\",role=\"db\"} 1\n"));
        assert!(text.contains("owui_overall_state{state=\"unknown\"} 1\n"));
        assert!(text.contains("owui_overall_state{state=\"healthy\"} 0\n"));
        assert!(text.contains("owui_check_state{check=\"disk:/var/lib/\\\"x\\\"\",kind=\"disk\",state=\"unknown\"} 1\n"));
        assert!(text.contains("owui_hardening_findings 2\n"));
        // Every sample line is `name{labels} value` or `name value`.
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            assert!(
                line.rsplit_once(' ')
                    .is_some_and(|(_, v)| v.parse::<f64>().is_ok()),
                "{line}"
            );
        }
    }
}
