//! What the status page draws: fixed-size rings of samples, one point every 10 s for the
//! last hour and one every 5 minutes for the last day, plus the gateway's outages.
//!
//! A sampler task feeds [`History::record`] every [`FINE_STEP`] seconds from a snapshot.
//! Counters (interface bytes, forward packets and bytes) are kept as what they grew
//! during the step; gauges (conntrack entries, DHCP leases) as their value (the day's
//! points keep the highest of their five minutes). Every ring is allocated once at its
//! full size and the number of series is capped, so memory is bounded whatever the
//! config: see [`History::MEMORY_BOUND`].

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::Snapshot;

/// Seconds between two points of the hour's ring, and its length (1 h).
pub const FINE_STEP: u64 = 10;
pub const FINE_POINTS: usize = 360;
/// Seconds between two points of the day's ring, and its length (24 h).
pub const COARSE_STEP: u64 = 300;
pub const COARSE_POINTS: usize = 288;
/// Most series kept per ring: interfaces, gateway, conntrack and DHCP first, the
/// forwards take what is left (at 2 series each).
pub const MAX_SERIES: usize = 96;
/// Gateway outages remembered.
pub const OUTAGES_KEPT: usize = 32;
/// A point with no value (the series did not exist then, or no delta yet).
const MISSING: u64 = u64::MAX;

/// The file in the state directory the history is kept in across restarts.
pub const FILE_NAME: &str = "status-history.json";

/// What a series measures; `label` names which one (an interface, a LAN, a forward).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct SeriesKey {
    pub kind: Kind,
    pub label: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// Bytes an interface received during the step (label: the interface).
    RxBytes,
    /// Bytes an interface sent during the step.
    TxBytes,
    /// Gateway checks that found the gateway answering, and checks with a verdict.
    GatewayOk,
    GatewayChecked,
    /// Connections tracked (gauge).
    Conntrack,
    /// Active DHCP leases (gauge; label: the LAN).
    DhcpLeased,
    /// Packets and bytes that took a forward (label: [`super::ForwardStats::key`]).
    ForwardPackets,
    ForwardBytes,
}

impl Kind {
    /// The name `/api/status` gives it.
    pub fn name(self) -> &'static str {
        match self {
            Kind::RxBytes => "rx_bytes",
            Kind::TxBytes => "tx_bytes",
            Kind::GatewayOk => "gateway_ok",
            Kind::GatewayChecked => "gateway_checked",
            Kind::Conntrack => "conntrack",
            Kind::DhcpLeased => "dhcp_leased",
            Kind::ForwardPackets => "forward_packets",
            Kind::ForwardBytes => "forward_bytes",
        }
    }

    fn is_gauge(self) -> bool {
        matches!(self, Kind::Conntrack | Kind::DhcpLeased)
    }

    /// Counters that only grow: their steps are differences of successive readings.
    fn is_cumulative(self) -> bool {
        matches!(
            self,
            Kind::RxBytes | Kind::TxBytes | Kind::ForwardPackets | Kind::ForwardBytes
        )
    }
}

fn is_forward(k: &SeriesKey) -> bool {
    matches!(k.kind, Kind::ForwardPackets | Kind::ForwardBytes)
}

fn key(kind: Kind, label: &str) -> SeriesKey {
    SeriesKey {
        kind,
        label: label.to_string(),
    }
}

/// One ring: the times of its points and, for each series, a value per point.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Tier {
    pub step: u64,
    points: usize,
    times: VecDeque<u64>,
    #[serde(with = "series_list")]
    series: BTreeMap<SeriesKey, VecDeque<u64>>,
}

/// The series as a list of (key, values) in the history file (JSON keys are strings).
mod series_list {
    use super::{SeriesKey, VecDeque};
    use serde::{Deserialize, Deserializer, Serialize, Serializer};
    use std::collections::BTreeMap;

    type Series = BTreeMap<SeriesKey, VecDeque<u64>>;

    pub fn serialize<S: Serializer>(series: &Series, to: S) -> Result<S::Ok, S::Error> {
        series.iter().collect::<Vec<_>>().serialize(to)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(from: D) -> Result<Series, D::Error> {
        Ok(Vec::<(SeriesKey, VecDeque<u64>)>::deserialize(from)?
            .into_iter()
            .collect())
    }
}

impl Tier {
    fn new(step: u64, points: usize) -> Tier {
        Tier {
            step,
            points,
            times: VecDeque::with_capacity(points),
            series: BTreeMap::new(),
        }
    }

    /// Appends a point at `at`; `values` in priority order (new series are made while
    /// there is room). A series with no value left in the ring is dropped.
    fn push(&mut self, at: u64, values: &[(SeriesKey, u64)]) {
        if self.times.len() == self.points {
            self.times.pop_front();
            for ring in self.series.values_mut() {
                ring.pop_front();
            }
        }
        self.times.push_back(at);
        let by_key: HashMap<&SeriesKey, u64> = values.iter().map(|(k, v)| (k, *v)).collect();
        for (k, ring) in &mut self.series {
            ring.push_back(by_key.get(k).copied().unwrap_or(MISSING));
        }
        for (k, v) in values {
            if self.series.len() >= MAX_SERIES {
                break;
            }
            if !self.series.contains_key(k) {
                let mut ring = VecDeque::with_capacity(self.points);
                ring.extend(std::iter::repeat_n(MISSING, self.times.len() - 1));
                ring.push_back(*v);
                self.series.insert(k.clone(), ring);
            }
        }
        self.series.retain(|_, ring| ring.iter().any(|v| *v != MISSING));
    }

    fn view(&self, pending: Option<(u64, &[(SeriesKey, u64)])>) -> TierView {
        let mut times: Vec<u64> = self.times.iter().copied().collect();
        let mut series: BTreeMap<SeriesKey, Vec<Option<u64>>> = self
            .series
            .iter()
            .map(|(k, ring)| (k.clone(), ring.iter().map(|v| (*v != MISSING).then_some(*v)).collect()))
            .collect();
        // The point still being filled (the day's current five minutes) shows as the last.
        if let Some((at, values)) = pending {
            times.push(at);
            for ring in series.values_mut() {
                ring.push(None);
            }
            for (k, v) in values {
                let ring = series.entry(k.clone()).or_insert_with(|| vec![None; times.len()]);
                if let Some(last) = ring.last_mut() {
                    *last = Some(*v);
                }
            }
        }
        TierView {
            step: self.step,
            times,
            series: series
                .into_iter()
                .map(|(key, values)| SeriesView {
                    kind: key.kind,
                    label: key.label,
                    values,
                })
                .collect(),
        }
    }
}

/// One gateway outage: from the first check that found no answer to the first that
/// found one again (Unix times).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Outage {
    pub start: u64,
    pub end: Option<u64>,
}

/// What one sample read: cumulative counters, gauges, and the gateway check's verdict.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Sample {
    pub at: u64,
    pub values: Vec<(SeriesKey, u64)>,
    /// (Unix time of the check, the gateway answered).
    pub gateway: Option<(u64, bool)>,
}

impl Sample {
    /// The sample of a snapshot; `forwards`: whether it read the forwards' counters.
    pub fn of(s: &Snapshot, forwards: bool) -> Sample {
        let mut values = Vec::new();
        for i in &s.interfaces {
            let get = |name: &str| i.counters.iter().find(|(n, _)| *n == name).map(|(_, v)| *v);
            if let Some(v) = get("rx_bytes") {
                values.push((key(Kind::RxBytes, &i.name), v));
            }
            if let Some(v) = get("tx_bytes") {
                values.push((key(Kind::TxBytes, &i.name), v));
            }
        }
        if let Some((count, _)) = s.conntrack {
            values.push((key(Kind::Conntrack, ""), count));
        }
        for d in &s.dhcp {
            values.push((key(Kind::DhcpLeased, &d.lan), d.leases.len() as u64));
        }
        if forwards {
            for f in &s.forwards {
                values.push((key(Kind::ForwardPackets, &f.key()), f.packets));
                values.push((key(Kind::ForwardBytes, &f.key()), f.bytes));
            }
        }
        Sample {
            at: s.now,
            values,
            gateway: s.gateway_check,
        }
    }
}

/// The rings and what is needed to fill them.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct History {
    pub fine: Tier,
    pub coarse: Tier,
    /// The day's point being filled: when its five minutes start, and each series' sum
    /// or maximum so far.
    coarse_pending: Option<(u64, Vec<(SeriesKey, u64)>)>,
    pub outages: VecDeque<Outage>,
    /// The last reading of each cumulative counter (not kept across restarts: the
    /// counters of a rebooted system start again).
    #[serde(skip)]
    last: HashMap<SeriesKey, u64>,
    /// Samples recorded since start (a copy made after as many is up to date).
    #[serde(skip)]
    pub recorded: u64,
}

impl Default for History {
    fn default() -> History {
        History {
            fine: Tier::new(FINE_STEP, FINE_POINTS),
            coarse: Tier::new(COARSE_STEP, COARSE_POINTS),
            coarse_pending: None,
            outages: VecDeque::with_capacity(OUTAGES_KEPT),
            last: HashMap::new(),
            recorded: 0,
        }
    }
}

impl History {
    /// The most the rings' values can take: every series of both rings full, 8 bytes a
    /// point, with the times. Keys, the pending point and the last readings add
    /// about 100 bytes per series on top (see `memory_stays_under_a_mebibyte`).
    pub const MEMORY_BOUND: usize = (MAX_SERIES + 1) * (FINE_POINTS + COARSE_POINTS) * 8;

    pub fn record(&mut self, sample: &Sample) {
        self.recorded += 1;
        let mut values = Vec::with_capacity(sample.values.len() + 2);
        if let Some((_, ok)) = sample.gateway {
            values.push((key(Kind::GatewayOk, ""), u64::from(ok)));
            values.push((key(Kind::GatewayChecked, ""), 1));
        }
        let mut seen = HashMap::with_capacity(sample.values.len());
        let mut forwards_seen = 0;
        for (k, v) in &sample.values {
            if is_forward(k) {
                // Readings only for as many forwards as the rings could keep (the first
                // in the config's order): memory stays bounded with thousands of them.
                forwards_seen += 1;
                if forwards_seen > MAX_SERIES {
                    continue;
                }
            }
            if k.kind.is_cumulative() {
                // A counter that went back (its interface was made anew) starts over.
                if let Some(before) = self.last.get(k) {
                    values.push((k.clone(), v.saturating_sub(*before)));
                }
                seen.insert(k.clone(), *v);
            } else {
                values.push((k.clone(), *v));
            }
        }
        // Readings of series that went away are forgotten; those only read now and then
        // (the forwards) are kept until they are read again.
        let forwards_read = sample.values.iter().any(|(k, _)| is_forward(k));
        self.last
            .retain(|k, _| seen.contains_key(k) || (!forwards_read && is_forward(k)));
        self.last.extend(seen);

        // The rings want the series in priority order: everything before the forwards.
        values.sort_by_key(|(k, _)| is_forward(k));
        self.fine.push(sample.at, &values);
        self.add_to_coarse(sample.at, &values);

        if let Some((at, ok)) = sample.gateway {
            let open = self.outages.back_mut().filter(|o| o.end.is_none());
            match (ok, open) {
                (false, None) => {
                    if self.outages.len() == OUTAGES_KEPT {
                        self.outages.pop_front();
                    }
                    self.outages.push_back(Outage { start: at, end: None });
                }
                (true, Some(o)) => o.end = Some(at.max(o.start)),
                _ => {}
            }
        }
    }

    fn add_to_coarse(&mut self, at: u64, values: &[(SeriesKey, u64)]) {
        let bucket = at - at % COARSE_STEP;
        if let Some((start, done)) = self.coarse_pending.take_if(|(start, _)| *start != bucket) {
            self.coarse.push(start + COARSE_STEP, &done);
        }
        let (_, acc) = self.coarse_pending.get_or_insert_with(|| (bucket, Vec::new()));
        for (k, v) in values {
            match acc.iter().position(|(ak, _)| ak == k) {
                Some(i) if k.kind.is_gauge() => acc[i].1 = acc[i].1.max(*v),
                Some(i) => acc[i].1 = acc[i].1.saturating_add(*v),
                None if acc.len() < MAX_SERIES => acc.push((k.clone(), *v)),
                None => {}
            }
        }
    }

    /// A copy for the page and the API.
    pub fn view(&self) -> HistoryView {
        HistoryView {
            hour: self.fine.view(None),
            day: self.coarse.view(
                self.coarse_pending
                    .as_ref()
                    .map(|(start, v)| (start + COARSE_STEP, v.as_slice())),
            ),
            outages: self.outages.iter().copied().collect(),
        }
    }

    /// The history kept in `path`, or an empty one (a missing or unreadable file,
    /// logged; one from another ring layout is not used).
    pub fn load(path: &Path) -> History {
        let text = match std::fs::read(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return History::default(),
            Err(e) => {
                tracing::warn!("cannot read {}: {e}; the graphs start empty", path.display());
                return History::default();
            }
        };
        match serde_json::from_slice::<History>(&text) {
            Ok(mut h) if h.fits() => {
                // Full size now, as a new history's rings are: no growth later.
                for tier in [&mut h.fine, &mut h.coarse] {
                    let room = tier.points - tier.times.len();
                    tier.times.reserve_exact(room);
                    for ring in tier.series.values_mut() {
                        ring.reserve_exact(room);
                    }
                }
                h
            }
            Ok(_) => History::default(),
            Err(e) => {
                tracing::warn!(
                    "{} is not a history routerd can read ({e}); the graphs start empty",
                    path.display()
                );
                History::default()
            }
        }
    }

    /// Whether a loaded history has this build's shape and bounds.
    fn fits(&self) -> bool {
        let tier_fits = |t: &Tier, step, points| {
            t.step == step
                && t.points == points
                && t.times.len() <= points
                && t.series.len() <= MAX_SERIES
                && t.series.values().all(|r| r.len() == t.times.len())
        };
        tier_fits(&self.fine, FINE_STEP, FINE_POINTS)
            && tier_fits(&self.coarse, COARSE_STEP, COARSE_POINTS)
            && self.outages.len() <= OUTAGES_KEPT
            && self.coarse_pending.as_ref().is_none_or(|(_, v)| v.len() <= MAX_SERIES)
    }

    /// Writes the history to `path` atomically.
    pub fn save(&self, path: &Path) -> std::io::Result<()> {
        let json = serde_json::to_vec(self).map_err(std::io::Error::other)?;
        crate::state::write_atomic(path, &json)
    }
}

/// The rings as the page and `/api/status` show them.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct HistoryView {
    /// The last hour, a point every 10 s.
    pub hour: TierView,
    /// The last day, a point every 5 minutes (the last one still filling).
    pub day: TierView,
    pub outages: Vec<Outage>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct TierView {
    /// Seconds per point.
    pub step: u64,
    /// Unix time each point ends (the hour's: its reading); the day's last point may
    /// end in the future, its five minutes still filling.
    pub times: Vec<u64>,
    pub series: Vec<SeriesView>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SeriesView {
    pub kind: Kind,
    pub label: String,
    /// One per entry of `times`; null where there is no value.
    pub values: Vec<Option<u64>>,
}

impl TierView {
    pub fn get(&self, kind: Kind, label: &str) -> Option<&SeriesView> {
        self.series.iter().find(|s| s.kind == kind && s.label == label)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(at: u64, rx: u64, gateway: Option<bool>) -> Sample {
        Sample {
            at,
            values: vec![(key(Kind::RxBytes, "wan"), rx), (key(Kind::Conntrack, ""), at / 10)],
            gateway: gateway.map(|ok| (at, ok)),
        }
    }

    #[test]
    fn counters_become_steps_and_gauges_stay_values() {
        let mut h = History::default();
        h.record(&sample(1000, 500, None));
        h.record(&sample(1010, 800, None));
        h.record(&sample(1020, 100, None)); // the interface was made anew
        let v = h.view();
        assert_eq!(v.hour.times, [1000, 1010, 1020]);
        let rx = v.hour.get(Kind::RxBytes, "wan").map(|s| s.values.clone());
        assert_eq!(rx, Some(vec![None, Some(300), Some(0)]));
        let ct = v.hour.get(Kind::Conntrack, "").map(|s| s.values.clone());
        assert_eq!(ct, Some(vec![Some(100), Some(101), Some(102)]));
    }

    #[test]
    fn the_day_sums_counters_and_keeps_the_highest_gauge_per_five_minutes() {
        let mut h = History::default();
        let mut rx = 0;
        for i in 0..60u64 {
            rx += 10;
            h.record(&sample(3000 + i * 10, rx, Some(i != 7)));
        }
        let v = h.view();
        // 3000..3300 closed, 3300..3600 still filling (each point at its end).
        assert_eq!(v.day.times, [3300, 3600]);
        let rx = v.day.get(Kind::RxBytes, "wan").map(|s| s.values.clone());
        assert_eq!(rx, Some(vec![Some(290), Some(300)]));
        let ct = v.day.get(Kind::Conntrack, "").map(|s| s.values.clone());
        assert_eq!(ct, Some(vec![Some(329), Some(359)]));
        let ok = v.day.get(Kind::GatewayOk, "").map(|s| s.values.clone());
        assert_eq!(ok, Some(vec![Some(29), Some(30)]));
        assert_eq!(
            v.outages,
            [Outage {
                start: 3070,
                end: Some(3080)
            }]
        );
    }

    #[test]
    fn rings_keep_their_length_and_series_their_cap() {
        let mut h = History::default();
        for i in 0..(FINE_POINTS as u64 * 12) {
            let mut s = sample(i * 10, i, Some(i % 100 != 0));
            // Far more forwards than the rings keep.
            for f in 0..200 {
                s.values.push((key(Kind::ForwardBytes, &format!("f{f}")), i * f));
            }
            h.record(&s);
        }
        assert_eq!(h.fine.times.len(), FINE_POINTS);
        // The last five minutes are still filling.
        assert_eq!(h.coarse.times.len(), FINE_POINTS * 12 * 10 / 300 - 1);
        assert!(h.fine.series.len() <= MAX_SERIES && h.coarse.series.len() <= MAX_SERIES);
        assert!(
            h.fine.series.contains_key(&key(Kind::RxBytes, "wan")),
            "interfaces come first"
        );
        assert!(h
            .fine
            .series
            .values()
            .all(|r| r.len() == FINE_POINTS && r.capacity() == FINE_POINTS));
        assert!(h.outages.len() <= OUTAGES_KEPT);
        assert!(h.last.len() <= 2 * MAX_SERIES);
    }

    #[test]
    fn memory_stays_under_a_mebibyte() {
        // Values, plus about 100 bytes per series for its key, pending point and reading.
        let total = History::MEMORY_BOUND + 3 * MAX_SERIES * 100 + OUTAGES_KEPT * 24;
        assert!(total < 1 << 20, "{total} bytes");
    }

    #[test]
    fn a_saved_history_loads_back_and_a_bad_file_starts_empty() {
        let dir = std::env::temp_dir().join(format!("routerd-history-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap_or_default();
        let path = dir.join(FILE_NAME);
        let mut h = History::default();
        for i in 0..40 {
            h.record(&sample(6000 + i * 10, i * 1000, Some(i < 30)));
        }
        h.save(&path).unwrap_or_else(|e| panic!("{e}"));
        let back = History::load(&path);
        assert_eq!(back.view(), h.view());
        std::fs::write(&path, b"{\"fine\": 1}").unwrap_or_default();
        assert_eq!(History::load(&path).view(), History::default().view());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
