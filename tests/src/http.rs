//! A minimal HTTP GET from inside a lab namespace (for the status page and metrics).

use std::io::{self, Read, Write};

use crate::netns::Netns;
use crate::traffic::tcp_connect;

/// GETs `path` from `addr` (host:port) and returns (status code, body).
pub fn get(ns: &Netns, addr: &str, path: &str) -> io::Result<(u16, String)> {
    let mut stream = tcp_connect(ns, addr)?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )?;
    let mut response = String::new();
    stream.read_to_string(&mut response)?;
    let (head, body) = response
        .split_once("\r\n\r\n")
        .ok_or_else(|| io::Error::other("no header end"))?;
    let code = head
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| io::Error::other(format!("bad status line: {head}")))?;
    Ok((code, body.to_string()))
}

/// The value of the first sample of `metric` whose labels contain every `labels` pair.
pub fn metric(text: &str, metric: &str, labels: &[(&str, &str)]) -> Option<f64> {
    text.lines().filter(|l| !l.starts_with('#')).find_map(|line| {
        let (name_labels, value) = line.rsplit_once(' ')?;
        let (name, label_text) = match name_labels.split_once('{') {
            Some((n, rest)) => (n, rest.trim_end_matches('}')),
            None => (name_labels, ""),
        };
        let matches = name == metric
            && labels
                .iter()
                .all(|(k, v)| label_text.split(',').any(|kv| kv == format!("{k}=\"{v}\"")));
        if matches {
            value.parse().ok()
        } else {
            None
        }
    })
}
