//! One-line logs on stderr, as text (`<UTC time> <component> <level> <message>`)
//! or as one JSON object per line for log shippers (`--log-format json`).
//!
//! Deliberately small: servers log a line per start, stop and fault, nothing per
//! request unless asked to. Levels: `ERROR` (a fault, with its reference),
//! `WARN`, `INFO` (start, stop), `TRACE` (one line per request, with
//! `--log-requests`). Every fault of a process gets its own reference from one
//! counter ([`next_fault_ref`]), which the client's error message also carries.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

/// How lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// `2026-11-26T15:29:50.123Z seller_srv INFO listening on 0.0.0.0:5001`
    Text,
    /// `{"time":"2026-11-26T15:29:50.123Z","component":"seller_srv","level":"INFO","message":"..."}`
    Json,
}

impl Format {
    /// `text` or `json`.
    pub fn parse(s: &str) -> Option<Format> {
        match s {
            "text" => Some(Format::Text),
            "json" => Some(Format::Json),
            _ => None,
        }
    }
}

static JSON: AtomicBool = AtomicBool::new(false);
static NEXT_FAULT_REF: AtomicU64 = AtomicU64::new(1);

/// Sets the format of every following line of this process.
pub fn set_format(format: Format) {
    JSON.store(format == Format::Json, Ordering::Relaxed);
}

/// A reference for a new fault, unique in this process: logged with the fault
/// and put in the client's error message, so one number names one fault.
pub fn next_fault_ref() -> u64 {
    NEXT_FAULT_REF.fetch_add(1, Ordering::Relaxed)
}

/// The current UTC time as `YYYY-MM-DDTHH:MM:SS.mmmZ`.
fn timestamp() -> String {
    chrono::Utc::now()
        .format("%Y-%m-%dT%H:%M:%S%.3fZ")
        .to_string()
}

/// One line in `format`, without the newline.
fn format_line(format: Format, time: &str, component: &str, level: &str, message: &str) -> String {
    match format {
        Format::Text => format!("{time} {component} {level} {message}"),
        Format::Json => serde_json::json!({
            "time": time,
            "component": component,
            "level": level,
            "message": message,
        })
        .to_string(),
    }
}

/// Writes one log line.
pub fn line(component: &str, level: &str, message: &str) {
    let format = if JSON.load(Ordering::Relaxed) {
        Format::Json
    } else {
        Format::Text
    };
    eprintln!(
        "{}",
        format_line(format, &timestamp(), component, level, message)
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_are_iso8601_utc_with_milliseconds() {
        let t = timestamp();
        assert_eq!(t.len(), 24, "{t}");
        assert!(t.starts_with("20") && t.ends_with('Z'), "{t}");
        assert_eq!(&t[10..11], "T");
        assert_eq!(&t[19..20], ".");
    }

    #[test]
    fn text_lines_read_left_to_right_and_json_lines_are_one_object() {
        let time = "2026-11-26T15:29:50.123Z";
        assert_eq!(
            format_line(Format::Text, time, "seller_srv", "INFO", "listening"),
            "2026-11-26T15:29:50.123Z seller_srv INFO listening"
        );
        let json = format_line(
            Format::Json,
            time,
            "buyer_srv",
            "ERROR",
            "a \"quoted\"\nmessage",
        );
        assert!(!json.contains('\n'), "one line: {json}");
        let value: serde_json::Value = serde_json::from_str(&json).expect("JSON");
        assert_eq!(value["time"], time);
        assert_eq!(value["component"], "buyer_srv");
        assert_eq!(value["level"], "ERROR");
        assert_eq!(value["message"], "a \"quoted\"\nmessage");
    }

    #[test]
    fn fault_references_never_repeat() {
        let a = next_fault_ref();
        let b = next_fault_ref();
        assert!(b > a);
    }
}
