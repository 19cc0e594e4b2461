//! `show version`.

use serde::{Deserialize, Serialize};

/// The daemon's release, process and uptime.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct VersionInfo {
    pub version: String,
    pub pid: u32,
    pub uptime_s: u64,
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn json_is_what_the_daemon_has_always_sent() {
        let v = VersionInfo {
            version: "0.1.0".into(),
            pid: 4242,
            uptime_s: 61,
        };
        let json = r#"{"version":"0.1.0","pid":4242,"uptime_s":61}"#;
        assert_eq!(serde_json::to_string(&v).unwrap(), json);
        assert_eq!(serde_json::from_str::<VersionInfo>(json).unwrap(), v);
    }
}
