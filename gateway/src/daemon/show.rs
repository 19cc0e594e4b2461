//! `show version` as text.

use gateway_report::version::VersionInfo;

/// One line: the release, the process and how long it has run.
pub fn render_version(v: &VersionInfo) -> String {
    format!(
        "gateway {} (pid {}), up {}s\n",
        v.version, v.pid, v.uptime_s
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_in_one_line() {
        let v = VersionInfo {
            version: "0.1.0".into(),
            pid: 42,
            uptime_s: 61,
        };
        assert_eq!(render_version(&v), "gateway 0.1.0 (pid 42), up 61s\n");
    }
}
