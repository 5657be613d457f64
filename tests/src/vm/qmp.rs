//! QMP, QEMU's machine protocol on the VM's control socket (`qemu/run --qmp`).

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

/// Sends one QMP command (after the capabilities handshake) and returns the reply.
pub fn execute(socket: &Path, command: &str) -> serde_json::Value {
    execute_with(socket, command, serde_json::Value::Null)
}

/// [`execute`] with arguments (`Null`: none).
pub fn execute_with(socket: &Path, command: &str, arguments: serde_json::Value) -> serde_json::Value {
    let stream = UnixStream::connect(socket).unwrap_or_else(|e| panic!("QMP {}: {e}", socket.display()));
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap_or_else(|e| panic!("{e}"));
    let mut writer = stream.try_clone().unwrap_or_else(|e| panic!("{e}"));
    let mut reader = BufReader::new(stream);
    let mut read_reply = |what: &str| -> serde_json::Value {
        loop {
            let mut line = String::new();
            match reader.read_line(&mut line) {
                Ok(0) | Err(_) => panic!("QMP closed while waiting for {what}"),
                Ok(_) => {}
            }
            let v: serde_json::Value = serde_json::from_str(&line).unwrap_or_else(|e| panic!("QMP sent {line:?}: {e}"));
            // Skip asynchronous events.
            if v.get("event").is_none() {
                return v;
            }
        }
    };
    let greeting = read_reply("the greeting");
    assert!(greeting.get("QMP").is_some(), "not a QMP greeting: {greeting}");
    writer
        .write_all(b"{\"execute\":\"qmp_capabilities\"}\n")
        .unwrap_or_else(|e| panic!("{e}"));
    let caps = read_reply("qmp_capabilities");
    assert!(caps.get("return").is_some(), "qmp_capabilities: {caps}");
    let request = match arguments {
        serde_json::Value::Null => serde_json::json!({ "execute": command }),
        arguments => serde_json::json!({ "execute": command, "arguments": arguments }),
    };
    writer
        .write_all(format!("{request}\n").as_bytes())
        .unwrap_or_else(|e| panic!("{e}"));
    read_reply(command)
}
