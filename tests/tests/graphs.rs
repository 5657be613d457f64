//! The status page's graphs and `/api/status`: traffic through the router shows in the
//! history and in the SVG the page draws, a gateway outage in the history, forward
//! counters keep their totals across reloads, and a browser's picture of the page with
//! data. Needs root; run through `tests/run`.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use serde_json::Value;
use testkit::http::{get, metric};
use testkit::lab::{Lab, Options, CONFIG};
use testkit::netns::Netns;
use testkit::traffic::{tcp_connect, tcp_echo, tcp_exchange, EchoServer};

const STATUS: &str = "172.16.0.1:80";

fn lab(config: &str) -> Lab {
    let mut lab = Lab::new(Options { wan_mac: None });
    lab.start_routerd(config);
    lab.wait_log("status page and metrics listening", 1);
    lab
}

fn api(ns: &Netns) -> Value {
    let (code, body) = get(ns, STATUS, "/api/status").expect("/api/status from the LAN");
    assert_eq!(code, 200, "{body}");
    serde_json::from_str(&body).unwrap_or_else(|e| panic!("/api/status is not JSON ({e}): {body}"))
}

/// Asks `/api/status` until `done` finds what it waits for (at most `secs`).
fn poll_api<T>(ns: &Netns, secs: u64, what: &str, done: impl Fn(&Value) -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        let status = api(ns);
        if let Some(found) = done(&status) {
            return found;
        }
        assert!(
            Instant::now() < deadline,
            "{what} not in /api/status within {secs}s: {status}"
        );
        std::thread::sleep(Duration::from_secs(1));
    }
}

/// The values of the series `kind`/`label` in the history's tier `tier` ("hour", "day").
fn series(status: &Value, tier: &str, kind: &str, label: &str) -> Vec<Option<u64>> {
    status["history"][tier]["series"]
        .as_array()
        .and_then(|all| all.iter().find(|s| s["kind"] == kind && s["label"] == label))
        .and_then(|s| s["values"].as_array())
        .map(|values| values.iter().map(Value::as_u64).collect())
        .unwrap_or_default()
}

/// The points of the `<path>` drawing `series` inside the figure that starts with
/// `figure` (its opening tag's attributes), as (x, y).
fn svg_points(page: &str, figure: &str, series: &str) -> Vec<(f64, f64)> {
    let start = page
        .find(figure)
        .unwrap_or_else(|| panic!("no figure {figure} on the page: {page}"));
    let figure_text = &page[start..page[start..].find("</figure>").map_or(page.len(), |end| start + end)];
    let marker = format!("data-series=\"{series}\" d=\"");
    let Some(at) = figure_text.find(&marker) else {
        panic!("no path {series} in {figure_text}");
    };
    let d = &figure_text[at + marker.len()..];
    let d = &d[..d.find('"').unwrap_or(d.len())];
    d.split_whitespace()
        .filter_map(|p| {
            let (x, y) = p.trim_start_matches(['M', 'L']).split_once(',')?;
            Some((x.parse().ok()?, y.parse().ok()?))
        })
        .collect()
}

/// Where tests keep files for people to look at (screenshots).
fn artifacts() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/test-artifacts");
    std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    dir
}

#[test]
fn traffic_through_the_router_shows_in_the_graphs() {
    if !testkit::require_root() {
        return;
    }
    let lab = lab(CONFIG);
    // The graphs start from the sampler's first reading of the counters (every 10 s).
    poll_api(&lab.guest, 30, "a first reading of the WAN's counters", |s| {
        let read = s["history"]["hour"]["series"]
            .as_array()?
            .iter()
            .any(|s| s["kind"] == "tx_bytes" && s["label"] == "wan");
        read.then_some(())
    });
    // A mebibyte each way between a guest and the internet host, through NAT.
    let _inet = EchoServer::tcp(&lab.inet, "198.51.100.1:7000");
    let chunk = "x".repeat(256 * 1024);
    let mut stream = tcp_connect(&lab.guest, "198.51.100.1:7000").expect("connect through NAT");
    for _ in 0..4 {
        let echoed = tcp_exchange(&mut stream, &chunk).expect("echo through NAT");
        assert_eq!(echoed.len(), chunk.len());
    }
    drop(stream);
    let mib = (1 << 20) as u64;

    // The hour's rings count it on both NICs, each way (sampled every 10 s).
    let status = poll_api(&lab.guest, 30, "a mebibyte sent on the WAN", |s| {
        let sent: u64 = series(s, "hour", "tx_bytes", "wan").iter().flatten().sum();
        (sent >= mib).then(|| s.clone())
    });
    for (kind, nic) in [("rx_bytes", "wan"), ("rx_bytes", "lan"), ("tx_bytes", "lan")] {
        let total: u64 = series(&status, "hour", kind, nic).iter().flatten().sum();
        assert!(total >= mib, "{kind} {nic}: {total} bytes in the hour's history");
    }
    // And the day's ring (its five minutes still filling) too.
    let day: u64 = series(&status, "day", "tx_bytes", "wan").iter().flatten().sum();
    assert!(day >= mib, "the day's history has {day} bytes sent on the WAN");
    let times = status["history"]["hour"]["times"].as_array().map_or(0, Vec::len);
    assert_eq!(
        series(&status, "hour", "tx_bytes", "wan").len(),
        times,
        "a value per point"
    );
    assert_eq!(status["history"]["hour"]["step"], 10);
    assert_eq!(status["hostname"], "router");
    assert!(status["routerd"]["uptime"].as_u64().is_some());
    assert_eq!(status["config"]["generation"], 1);

    // The page draws it: the WAN's hour chart has a line that rises off the bottom.
    let (code, page) = get(&lab.guest, STATUS, "/").expect("the page");
    assert_eq!(code, 200);
    for series in ["tx_bytes wan", "rx_bytes wan"] {
        let points = svg_points(&page, "<figure data-interface=\"wan\" data-step=\"10\">", series);
        assert!(!points.is_empty(), "{series}: no points");
        let bottom = 100.0;
        assert!(
            points.iter().any(|(_, y)| *y < bottom - 50.0),
            "{series} never rises above half the chart: {points:?}"
        );
        assert!(points
            .iter()
            .all(|(x, y)| (0.0..=600.0).contains(x) && (0.0..=bottom).contains(y)));
    }

    // A browser's picture of it, for people to look at.
    let shot = artifacts().join("status-graphs.png");
    let _ = std::fs::remove_file(&shot);
    let out = lab
        .guest
        .command("chromium")
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--window-size=1000,2400",
        ])
        .arg(format!(
            "--user-data-dir={}",
            lab.dir.join("chromium-profile").display()
        ))
        .arg(format!("--screenshot={}", shot.display()))
        .arg("http://172.16.0.1/")
        .output()
        .expect("run chromium (Debian package chromium)");
    let png =
        std::fs::read(&shot).unwrap_or_else(|_| panic!("no screenshot: {}", String::from_utf8_lossy(&out.stderr)));
    assert!(png.starts_with(b"\x89PNG") && png.len() > 10_000, "{} bytes", png.len());
}

#[test]
fn a_gateway_outage_shows_in_the_history() {
    if !testkit::require_root() {
        return;
    }
    let mut lab = Lab::new(Options { wan_mac: None });
    // The gateway is down when the router comes up: its checks find no answer.
    lab.hoster.ip(&["link", "set", "vmbr0", "down"]);
    lab.start_routerd(CONFIG);
    lab.wait_log("status page and metrics listening", 1);
    let started = poll_api(&lab.guest, 30, "an open outage", |s| {
        let outage = s["history"]["outages"].as_array()?.last()?.clone();
        outage["end"].is_null().then(|| outage["start"].as_u64()).flatten()
    });
    // It comes back; the next check (every 10 s while it fails) closes the outage.
    lab.hoster.ip(&["link", "set", "vmbr0", "up"]);
    let (start, end) = poll_api(&lab.guest, 60, "the outage's end", |s| {
        let outage = s["history"]["outages"].as_array()?.last()?.clone();
        Some((outage["start"].as_u64()?, outage["end"].as_u64()?))
    });
    assert_eq!(start, started);
    assert!(end > start, "{start}..{end}");
    let status = api(&lab.guest);
    let ok: Vec<Option<u64>> = series(&status, "hour", "gateway_ok", "");
    let checked: Vec<Option<u64>> = series(&status, "hour", "gateway_checked", "");
    assert!(
        ok.contains(&Some(0)) && ok.contains(&Some(1)),
        "failed then answered: {ok:?}"
    );
    assert_eq!(ok.len(), checked.len());
    let page = get(&lab.guest, STATUS, "/").expect("the page").1;
    assert!(page.contains("class=\"down\""), "red in the timeline: {page}");
    assert!(
        page.contains("<th>gateway outage began</th>"),
        "the outage listed: {page}"
    );
}

#[test]
fn forward_counters_keep_their_totals_across_reloads() {
    if !testkit::require_root() {
        return;
    }
    let mut lab = lab(CONFIG);
    let _web = EchoServer::tcp(&lab.web, "0.0.0.0:8080");
    let forward_80 = |lab: &Lab| {
        let text = get(&lab.guest, STATUS, "/metrics").expect("metrics").1;
        metric(
            &text,
            "router_forward_packets_total",
            &[("protocol", "tcp"), ("port", "80")],
        )
    };
    for _ in 0..3 {
        tcp_echo(&lab.inet, "203.0.113.10:80", "in").expect("forward");
    }
    assert_eq!(forward_80(&lab), Some(3.0));

    // A reload that puts a new forward first: port 80's counter gets a new name in a
    // new ruleset, starting at zero in nft.
    let moved = CONFIG.replacen(
        "[[forward]]",
        "[[forward]]\nprotocol = \"tcp\"\nport = 2222\nto = \"172.16.10.205\"\n\n[[forward]]",
        1,
    );
    lab.reload(&moved);
    lab.wait_log("config applied", 1);
    let nft = lab.router.sh("nft list counters table inet routerd");
    assert!(nft.contains("fwd_1_tcp"), "{nft}");
    assert_eq!(forward_80(&lab), Some(3.0), "the total after the reload");
    tcp_echo(&lab.inet, "203.0.113.10:80", "in").expect("forward after the reload");
    assert_eq!(forward_80(&lab), Some(4.0));

    // A reload that changes nothing keeps it too; so does the JSON.
    lab.hup();
    lab.wait_log("config applied", 2);
    assert_eq!(forward_80(&lab), Some(4.0));
    let status = api(&lab.guest);
    let row = status["forwards"]
        .as_array()
        .and_then(|f| f.iter().find(|f| f["port"] == "80" && f["protocol"] == "tcp"))
        .cloned()
        .unwrap_or_default();
    assert_eq!(row["packets"], 4, "{status}");
    assert_eq!(status["config"]["generation"], 3);
    let new = status["forwards"]
        .as_array()
        .and_then(|f| f.iter().find(|f| f["port"] == "2222"))
        .cloned()
        .unwrap_or_default();
    assert_eq!(new["packets"], 0, "the new forward starts at zero: {status}");
}

#[test]
fn the_api_is_never_reachable_from_the_wan() {
    if !testkit::require_root() {
        return;
    }
    let lab = lab(&format!("{CONFIG}\n[status]\nport = 8081\n"));
    assert_eq!(
        get(&lab.guest, "172.16.0.1:8081", "/api/status")
            .expect("from the LAN")
            .0,
        200
    );
    lab.hoster.ip(&[
        "route",
        "add",
        "172.16.0.0/16",
        "via",
        "203.0.113.10",
        "dev",
        "vmbr0",
        "onlink",
    ]);
    for addr in ["203.0.113.10:8081", "172.16.0.1:8081"] {
        assert!(
            get(&lab.inet, addr, "/api/status").is_err(),
            "/api/status answered the internet host on {addr}"
        );
    }
}
