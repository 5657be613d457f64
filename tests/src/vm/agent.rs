//! The QEMU guest agent protocol over the VM's virtio-serial chardev (`qemu/run --agent`),
//! spoken as Proxmox speaks it.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

/// Sends one guest agent command the way Proxmox's QMPClient does
/// (`guest-sync-delimited` with an id, then the command, in one write) and
/// returns the command's reply, or None for `guest-shutdown` (it answers
/// nothing). Fails when no reply comes within 30 s.
pub fn execute(socket: &Path, command: &str, arguments: serde_json::Value) -> Option<serde_json::Value> {
    static NEXT_ID: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
    let id = NEXT_ID.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    let mut stream = UnixStream::connect(socket).unwrap_or_else(|e| panic!("agent {}: {e}", socket.display()));
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap_or_else(|e| panic!("{e}"));
    let request = format!(
        "{}\n{}\n",
        serde_json::json!({ "execute": "guest-sync-delimited", "arguments": { "id": id } }),
        serde_json::json!({ "execute": command, "arguments": arguments })
    );
    stream
        .write_all(request.as_bytes())
        .unwrap_or_else(|e| panic!("agent: {e}"));
    let lines_wanted = if command == "guest-shutdown" { 1 } else { 2 };
    let mut got: Vec<u8> = Vec::new();
    let mut buf = [0u8; 65536];
    loop {
        // Proxmox skips everything up to the last 0xFF, then reads whole lines.
        let after = got.iter().rposition(|b| *b == 0xFF).map(|i| &got[i + 1..]);
        if let Some(rest) = after {
            let text = String::from_utf8_lossy(rest).into_owned();
            let lines: Vec<&str> = text.split('\n').collect();
            if lines.len() > lines_wanted {
                let sync: serde_json::Value =
                    serde_json::from_str(lines[0]).unwrap_or_else(|e| panic!("agent sync reply {:?}: {e}", lines[0]));
                assert_eq!(
                    sync["return"], id,
                    "guest-sync-delimited answered with another id: {text:?}"
                );
                return (lines_wanted == 2).then(|| {
                    serde_json::from_str(lines[1]).unwrap_or_else(|e| panic!("agent reply {:?}: {e}", lines[1]))
                });
            }
        }
        let n = stream
            .read(&mut buf)
            .unwrap_or_else(|e| panic!("agent: no reply to {command} ({e}); got {got:?}"));
        assert!(n > 0, "agent socket closed while waiting for {command}");
        got.extend_from_slice(&buf[..n]);
    }
}
