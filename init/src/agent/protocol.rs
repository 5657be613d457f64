//! The QEMU guest agent protocol, pure: bytes from the host in, replies out.
//!
//! The host sends JSON objects `{"execute": NAME, "arguments": {...}}`, one after
//! the other, on the virtio-serial port `org.qemu.guest_agent.0`; each gets one
//! JSON reply line, `{"return": ...}` or `{"error": {"class", "desc"}}`, except
//! `guest-shutdown`, which answers nothing when it works (as qemu-ga). A 0xFF byte
//! from the host resets the parser; `guest-sync-delimited` puts 0xFF before its
//! reply so the host can find it in a stream with leftovers (Proxmox uses it).
//! What the commands read or do is behind [`Host`], so this file is tested
//! without a VM.

use serde_json::{json, Map, Value};

/// The commands answered, with whether they answer on success (qemu-ga's
/// `success-response`).
pub const COMMANDS: &[(&str, bool)] = &[
    ("guest-sync-delimited", true),
    ("guest-sync", true),
    ("guest-ping", true),
    ("guest-info", true),
    ("guest-get-osinfo", true),
    ("guest-get-host-name", true),
    ("guest-get-time", true),
    ("guest-network-get-interfaces", true),
    ("guest-shutdown", false),
    ("guest-fsfreeze-status", true),
    ("guest-fsfreeze-freeze", true),
    ("guest-fsfreeze-freeze-list", true),
    ("guest-fsfreeze-thaw", true),
];

/// While frozen, only these run (as qemu-ga: anything else could write to disk).
const ALLOWED_WHILE_FROZEN: &[&str] = &[
    "guest-sync-delimited",
    "guest-sync",
    "guest-ping",
    "guest-info",
    "guest-fsfreeze-status",
    "guest-fsfreeze-thaw",
];

/// A bigger request than this is dropped whole (qemu-ga's own limit is larger, but
/// no command here takes more than a few bytes of arguments).
pub const MAX_REQUEST: usize = 64 * 1024;

pub const DELIMITER: u8 = 0xFF;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ShutdownMode {
    Powerdown,
    Halt,
    Reboot,
}

/// What the commands need from the system.
pub trait Host {
    fn hostname(&self) -> String;
    /// `guest-get-osinfo`'s object.
    fn os_info(&self) -> Value;
    /// `guest-network-get-interfaces`' list.
    fn interfaces(&self) -> Value;
    /// Nanoseconds since the epoch.
    fn time_ns(&self) -> i64;
    fn shutdown(&mut self, mode: ShutdownMode) -> Result<(), String>;
    /// Freezes the writable disk filesystems (`only`: these mountpoints); returns
    /// how many were frozen.
    fn freeze(&mut self, only: Option<&[String]>) -> Result<usize, String>;
    /// Thaws what is frozen; returns how many were thawed.
    fn thaw(&mut self) -> Result<usize, String>;
    fn frozen(&self) -> bool;
    /// Called before each wait for input (at least once a second).
    fn thaw_if_overdue(&mut self, _now: std::time::Instant) {}
}

/// Cuts the byte stream into JSON objects (brace depth, strings and escapes
/// respected). Bytes between objects (whitespace, stray text) are dropped.
#[derive(Debug, Default)]
pub struct Framer {
    buf: Vec<u8>,
    depth: usize,
    in_string: bool,
    escaped: bool,
    /// The current object outgrew [`MAX_REQUEST`]: skipped to its end.
    overflow: bool,
}

/// One unit of input.
#[derive(Debug, PartialEq, Eq)]
pub enum Frame {
    Object(Vec<u8>),
    TooLarge,
}

impl Framer {
    pub fn push(&mut self, bytes: &[u8]) -> Vec<Frame> {
        let mut frames = Vec::new();
        for &b in bytes {
            if b == DELIMITER {
                *self = Framer::default();
                continue;
            }
            if self.depth == 0 {
                if b == b'{' {
                    self.depth = 1;
                    self.buf.clear();
                    self.buf.push(b);
                    self.overflow = false;
                }
                continue;
            }
            if self.buf.len() < MAX_REQUEST {
                self.buf.push(b);
            } else {
                self.overflow = true;
            }
            if self.in_string {
                match (self.escaped, b) {
                    (true, _) => self.escaped = false,
                    (false, b'\\') => self.escaped = true,
                    (false, b'"') => self.in_string = false,
                    _ => {}
                }
                continue;
            }
            match b {
                b'"' => self.in_string = true,
                b'{' => self.depth += 1,
                b'}' => {
                    self.depth -= 1;
                    if self.depth == 0 {
                        let object = std::mem::take(&mut self.buf);
                        frames.push(if self.overflow {
                            Frame::TooLarge
                        } else {
                            Frame::Object(object)
                        });
                    }
                }
                _ => {}
            }
        }
        frames
    }
}

fn error(class: &str, desc: impl Into<String>) -> Value {
    json!({ "error": { "class": class, "desc": desc.into() } })
}

fn reply(value: Value) -> Value {
    json!({ "return": value })
}

/// The bytes to send back for one frame: nothing, or a JSON line (with 0xFF first
/// for `guest-sync-delimited`).
pub fn handle(frame: &Frame, host: &mut dyn Host, version: &str) -> Vec<u8> {
    let (delimited, response) = match frame {
        Frame::TooLarge => (
            false,
            Some(error(
                "GenericError",
                format!("request larger than {MAX_REQUEST} bytes"),
            )),
        ),
        Frame::Object(bytes) => match serde_json::from_slice::<Value>(bytes) {
            Err(e) => (false, Some(error("GenericError", format!("JSON parse error: {e}")))),
            Ok(request) => {
                let name = request.get("execute").and_then(Value::as_str).unwrap_or("");
                let empty = Map::new();
                let args = request.get("arguments").and_then(Value::as_object).unwrap_or(&empty);
                let response = execute(name, args, host, version);
                // qemu-ga echoes a request's "id" in the reply.
                let response = match (response, request.get("id")) {
                    (Some(Value::Object(mut r)), Some(id)) => {
                        r.insert("id".into(), id.clone());
                        Some(Value::Object(r))
                    }
                    (r, _) => r,
                };
                (name == "guest-sync-delimited", response)
            }
        },
    };
    let Some(response) = response else {
        return Vec::new();
    };
    let mut out = Vec::new();
    if delimited {
        out.push(DELIMITER);
    }
    out.extend_from_slice(response.to_string().as_bytes());
    out.push(b'\n');
    out
}

/// `guest-shutdown`'s `mode` argument; powerdown when absent.
fn shutdown_mode(args: &Map<String, Value>) -> Result<ShutdownMode, String> {
    match args.get("mode").map(Value::as_str) {
        None | Some(Some("powerdown")) => Ok(ShutdownMode::Powerdown),
        Some(Some("halt")) => Ok(ShutdownMode::Halt),
        Some(Some("reboot")) => Ok(ShutdownMode::Reboot),
        Some(other) => Err(format!(
            "Parameter 'mode' expects \"powerdown\", \"halt\" or \"reboot\", found {}",
            other.unwrap_or("a non-string")
        )),
    }
}

fn execute(name: &str, args: &Map<String, Value>, host: &mut dyn Host, version: &str) -> Option<Value> {
    if name.is_empty() {
        return Some(error("GenericError", "expected {\"execute\": COMMAND}"));
    }
    if !COMMANDS.iter().any(|(c, _)| *c == name) {
        return Some(error(
            "CommandNotFound",
            format!("The command {name} has not been found"),
        ));
    }
    if host.frozen() && !ALLOWED_WHILE_FROZEN.contains(&name) {
        return Some(error(
            "GenericError",
            format!("Command {name} has been disabled: the agent is in frozen state"),
        ));
    }
    Some(match name {
        "guest-sync" | "guest-sync-delimited" => match args.get("id") {
            Some(id) if id.is_i64() || id.is_u64() => reply(id.clone()),
            _ => error("GenericError", "Parameter 'id' is missing or not an integer"),
        },
        "guest-ping" => reply(json!({})),
        "guest-info" => {
            let commands: Vec<Value> = COMMANDS
                .iter()
                .map(|(c, success)| json!({ "name": c, "enabled": true, "success-response": success }))
                .collect();
            reply(json!({ "version": version, "supported_commands": commands }))
        }
        "guest-get-osinfo" => reply(host.os_info()),
        "guest-get-host-name" => reply(json!({ "host-name": host.hostname() })),
        "guest-get-time" => reply(json!(host.time_ns())),
        "guest-network-get-interfaces" => reply(host.interfaces()),
        "guest-shutdown" => {
            let mode = match shutdown_mode(args) {
                Ok(mode) => mode,
                Err(e) => return Some(error("GenericError", e)),
            };
            return match host.shutdown(mode) {
                Ok(()) => None,
                Err(e) => Some(error("GenericError", e)),
            };
        }
        "guest-fsfreeze-status" => reply(json!(if host.frozen() { "frozen" } else { "thawed" })),
        "guest-fsfreeze-freeze" | "guest-fsfreeze-freeze-list" => {
            if host.frozen() {
                return Some(error("GenericError", "The filesystems are already frozen"));
            }
            let list: Option<Vec<String>> = args
                .get("mountpoints")
                .and_then(Value::as_array)
                .map(|a| a.iter().filter_map(|m| m.as_str().map(str::to_string)).collect());
            match host.freeze(list.as_deref()) {
                Ok(n) => reply(json!(n)),
                Err(e) => error("GenericError", e),
            }
        }
        "guest-fsfreeze-thaw" => match host.thaw() {
            Ok(n) => reply(json!(n)),
            Err(e) => error("GenericError", e),
        },
        _ => error("CommandNotFound", format!("The command {name} has not been found")),
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    #[derive(Default)]
    pub(crate) struct FakeHost {
        pub frozen: usize,
        pub shutdowns: Vec<ShutdownMode>,
    }

    impl Host for FakeHost {
        fn hostname(&self) -> String {
            "router".into()
        }
        fn os_info(&self) -> Value {
            json!({ "id": "router-appliance" })
        }
        fn interfaces(&self) -> Value {
            json!([{ "name": "eth0", "hardware-address": "02:00:00:00:00:10",
                     "ip-addresses": [{ "ip-address-type": "ipv4", "ip-address": "203.0.113.10", "prefix": 32 }] }])
        }
        fn time_ns(&self) -> i64 {
            1_700_000_000_000_000_000
        }
        fn shutdown(&mut self, mode: ShutdownMode) -> Result<(), String> {
            self.shutdowns.push(mode);
            Ok(())
        }
        fn freeze(&mut self, _: Option<&[String]>) -> Result<usize, String> {
            self.frozen = 1;
            Ok(1)
        }
        fn thaw(&mut self) -> Result<usize, String> {
            Ok(std::mem::take(&mut self.frozen))
        }
        fn frozen(&self) -> bool {
            self.frozen > 0
        }
    }

    /// Feeds `input` and returns the replies as text (0xFF shown as `<FF>`).
    fn talk(host: &mut FakeHost, input: &[u8]) -> String {
        let mut framer = Framer::default();
        let mut out = Vec::new();
        for frame in framer.push(input) {
            out.extend(handle(&frame, host, "1.0"));
        }
        String::from_utf8_lossy(&out).replace('\u{fffd}', "<FF>")
    }

    #[test]
    fn ping_and_sync() {
        let mut h = FakeHost::default();
        assert_eq!(talk(&mut h, b"{\"execute\":\"guest-ping\"}"), "{\"return\":{}}\n");
        assert_eq!(
            talk(
                &mut h,
                b"\xff{\"execute\":\"guest-sync-delimited\",\"arguments\":{\"id\":1234}}\n"
            ),
            "<FF>{\"return\":1234}\n"
        );
        assert_eq!(
            talk(&mut h, b"{\"execute\":\"guest-sync\",\"arguments\":{\"id\":7}}"),
            "{\"return\":7}\n"
        );
    }

    #[test]
    fn requests_split_and_joined_across_reads() {
        let mut h = FakeHost::default();
        let mut framer = Framer::default();
        assert!(framer.push(b"{\"execute\":\"guest-").is_empty());
        let frames = framer.push(b"ping\"}{\"execute\":\"guest-get-host-name\"}");
        assert_eq!(frames.len(), 2);
        let out: Vec<u8> = frames.iter().flat_map(|f| handle(f, &mut h, "1.0")).collect();
        assert_eq!(
            String::from_utf8_lossy(&out),
            "{\"return\":{}}\n{\"return\":{\"host-name\":\"router\"}}\n"
        );
    }

    #[test]
    fn braces_in_strings_do_not_end_the_object() {
        let mut framer = Framer::default();
        let frames = framer.push(b"{\"execute\":\"x}\\\"{\"} ");
        assert_eq!(frames, vec![Frame::Object(b"{\"execute\":\"x}\\\"{\"}".to_vec())]);
    }

    #[test]
    fn a_delimiter_resets_a_half_read_request() {
        let mut h = FakeHost::default();
        assert_eq!(
            talk(&mut h, b"{\"execute\":\"guest-pi\xff{\"execute\":\"guest-ping\"}"),
            "{\"return\":{}}\n"
        );
    }

    #[test]
    fn unknown_commands_and_bad_json() {
        let mut h = FakeHost::default();
        assert_eq!(
            talk(&mut h, b"{\"execute\":\"guest-exec\"}"),
            "{\"error\":{\"class\":\"CommandNotFound\",\"desc\":\"The command guest-exec has not been found\"}}\n"
        );
        assert!(talk(&mut h, b"{\"execute\" guest-ping}")
            .starts_with("{\"error\":{\"class\":\"GenericError\",\"desc\":\"JSON parse error"));
        let huge = format!("{{\"execute\":\"guest-ping\",\"x\":\"{}\"}}", "a".repeat(MAX_REQUEST));
        assert!(talk(&mut h, huge.as_bytes()).contains("request larger than"));
        // The framer recovers after the oversized request.
        assert_eq!(talk(&mut h, b"{\"execute\":\"guest-ping\"}"), "{\"return\":{}}\n");
    }

    #[test]
    fn info_lists_every_command() {
        let mut h = FakeHost::default();
        let out = talk(&mut h, b"{\"execute\":\"guest-info\"}");
        let v: Value = serde_json::from_str(&out).unwrap_or_default();
        let names: Vec<&str> = v["return"]["supported_commands"]
            .as_array()
            .map(|a| a.iter().filter_map(|c| c["name"].as_str()).collect())
            .unwrap_or_default();
        for required in [
            "guest-ping",
            "guest-info",
            "guest-get-osinfo",
            "guest-get-host-name",
            "guest-network-get-interfaces",
            "guest-shutdown",
            "guest-fsfreeze-freeze",
            "guest-fsfreeze-thaw",
            "guest-fsfreeze-status",
        ] {
            assert!(names.contains(&required), "{required} missing from {names:?}");
        }
        assert_eq!(v["return"]["version"], "1.0");
    }

    #[test]
    fn shutdown_answers_nothing_and_takes_a_mode() {
        let mut h = FakeHost::default();
        assert_eq!(talk(&mut h, b"{\"execute\":\"guest-shutdown\"}"), "");
        assert_eq!(
            talk(
                &mut h,
                b"{\"execute\":\"guest-shutdown\",\"arguments\":{\"mode\":\"reboot\"}}"
            ),
            ""
        );
        assert_eq!(h.shutdowns, vec![ShutdownMode::Powerdown, ShutdownMode::Reboot]);
        assert!(talk(
            &mut h,
            b"{\"execute\":\"guest-shutdown\",\"arguments\":{\"mode\":\"sleep\"}}"
        )
        .contains("GenericError"));
    }

    #[test]
    fn freeze_cycle_as_a_backup_runs_it() {
        let mut h = FakeHost::default();
        assert_eq!(
            talk(&mut h, b"{\"execute\":\"guest-fsfreeze-status\"}"),
            "{\"return\":\"thawed\"}\n"
        );
        assert_eq!(
            talk(&mut h, b"{\"execute\":\"guest-fsfreeze-freeze\"}"),
            "{\"return\":1}\n"
        );
        assert_eq!(
            talk(&mut h, b"{\"execute\":\"guest-fsfreeze-status\"}"),
            "{\"return\":\"frozen\"}\n"
        );
        assert!(talk(&mut h, b"{\"execute\":\"guest-fsfreeze-freeze\"}").contains("frozen state"));
        assert!(talk(&mut h, b"{\"execute\":\"guest-get-host-name\"}").contains("frozen state"));
        assert_eq!(talk(&mut h, b"{\"execute\":\"guest-ping\"}"), "{\"return\":{}}\n");
        assert_eq!(
            talk(&mut h, b"{\"execute\":\"guest-fsfreeze-thaw\"}"),
            "{\"return\":1}\n"
        );
        assert_eq!(
            talk(&mut h, b"{\"execute\":\"guest-fsfreeze-thaw\"}"),
            "{\"return\":0}\n"
        );
    }

    #[test]
    fn request_ids_are_echoed() {
        let mut h = FakeHost::default();
        assert_eq!(
            talk(&mut h, b"{\"execute\":\"guest-ping\",\"id\":\"abc\"}"),
            "{\"id\":\"abc\",\"return\":{}}\n"
        );
    }
}
