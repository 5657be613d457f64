//! The long-running router: apply the config, then follow SIGHUP reloads.

use std::net::SocketAddrV4;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use rtnetlink::Handle;
use tokio::signal::unix::{signal, SignalKind};
use tokio::task::JoinHandle;

use crate::dhcp::{self, Scope};
use crate::dns;
use crate::firewall::{self, Features, Interfaces};
use crate::net::{self, Applied};
use crate::plan;
use crate::state::StateDir;
use crate::status::{self, Shared};
use config::{Config, ConfigError};

/// How long to wait before trying again when the NICs are not there yet.
const RETRY: Duration = Duration::from_secs(2);
/// Failed first applies before the last good config is tried instead.
const FALLBACK_AFTER: u32 = 5;

/// A LAN's running DHCP server and what it was started for: the LAN's name, the
/// scope, its `dhcp` section and the LAN's link (a change of any restarts it).
struct DhcpService {
    running: dhcp::Running,
    started_for: (String, Scope, config::Dhcp, u32),
}

/// Applies configs to this system (its network namespace).
pub struct Router {
    handle: Handle,
    /// Probed once, on the first WAN NIC seen.
    flowtable: Option<bool>,
    /// Where leases are kept (the state directory), if anywhere.
    state: Option<StateDir>,
    /// One DHCP server per LAN with DHCP, with what it was started for (restarted
    /// when that changes; the others keep running).
    dhcp: Vec<DhcpService>,
    /// The LAN and extra WAN links of the last apply: one no longer used loses its
    /// addresses.
    lan_links: Vec<net::Nic>,
    /// The status page and metrics servers, one on each LAN address.
    status: Vec<status::http::Running>,
    /// The LAN resolver, when on, and the leases the DHCP servers publish for it.
    dns: Option<dns::Running>,
    leases: Arc<dns::LeaseBook>,
    /// What the status page shows about the daemon.
    pub shared: Arc<Shared>,
    /// Collects for the status servers and the history sampler, one collection at a time.
    collector: Arc<status::collect::Collector>,
    /// Forwards by host name.
    proxy: crate::proxy::Proxy,
}

impl Router {
    pub fn new(state: Option<StateDir>) -> anyhow::Result<Router> {
        let handle = net::connect()?;
        let shared: Arc<Shared> = Arc::default();
        shared.update(|s| s.started = dhcp::server::unix_now());
        Ok(Router {
            collector: status::collect::Collector::new(shared.clone(), handle.clone()),
            handle,
            flowtable: None,
            state,
            dhcp: Vec::new(),
            lan_links: Vec::new(),
            status: Vec::new(),
            shared,
            dns: None,
            leases: Arc::default(),
            proxy: crate::proxy::Proxy::default(),
        })
    }

    /// Stops the services that keep state: each DHCP server writes its lease file a
    /// last time if it fell behind (a full disk).
    async fn stop(&mut self) {
        for dhcp in std::mem::take(&mut self.dhcp) {
            dhcp.running.stop().await;
        }
        if let Some(dns) = self.dns.take() {
            dns.stop().await;
        }
    }

    /// Starts, restarts or stops each LAN's DHCP server to match `config`, leaving
    /// those of unchanged LANs running.
    async fn ensure_dhcp(&mut self, config: &Config, applied: &Applied) {
        let wanted: Vec<_> = config
            .lans
            .iter()
            .zip(&applied.lans)
            .filter_map(|(lan, link)| {
                let (scope, pool) = Scope::from_lan(config, lan)?;
                let started_for = (lan.name.clone(), scope.clone(), lan.dhcp.clone()?, link.index);
                Some((started_for, scope, pool, link))
            })
            .collect();
        let (keep, stop): (Vec<DhcpService>, Vec<DhcpService>) = std::mem::take(&mut self.dhcp)
            .into_iter()
            .partition(|d| wanted.iter().any(|(w, ..)| *w == d.started_for));
        for old in stop {
            let lan = old.started_for.0.clone();
            old.running.stop().await;
            // A LAN left without DHCP takes its guests' names with it (a restarted
            // server publishes its own leases again).
            if !wanted.iter().any(|(w, ..)| w.0 == lan) {
                self.leases.publish(&lan, Vec::new());
            }
        }
        self.dhcp = keep;
        for (started_for, scope, pool, link) in wanted {
            if self.dhcp.iter().any(|d| d.started_for == started_for) {
                continue;
            }
            let dir = self.state.as_ref().map(|s| s.0.clone());
            let book = self.leases.clone();
            match dhcp::server::start(&started_for.0, scope, pool, link, dir, self.handle.clone(), book) {
                Ok(running) => self.dhcp.push(DhcpService { running, started_for }),
                Err(e) => tracing::error!("the DHCP server cannot start on {}: {e:#}", link.name),
            }
        }
        // In the order of the config, for the status page.
        self.dhcp
            .sort_by_key(|d| config.lans.iter().position(|l| l.name == d.started_for.0));
    }

    /// Starts, restarts (on any change of what it serves) or stops the resolver.
    async fn ensure_dns(&mut self, config: &Config, applied: &Applied) {
        let ifnames: Vec<String> = applied.lans.iter().map(|l| l.name.clone()).collect();
        let wanted = dns::Setup::from_config(config, &ifnames);
        if self.dns.as_ref().map(|d| &d.setup) == wanted.as_ref() {
            return;
        }
        if let Some(old) = self.dns.take() {
            old.stop().await;
        }
        self.dns = wanted.map(|setup| dns::start(setup, self.leases.clone()));
    }

    /// Starts or moves the status servers to the LAN addresses and configured port.
    async fn ensure_status(&mut self, config: &Config) {
        let wanted: Vec<SocketAddrV4> = match &config.status {
            Some(st) => config
                .lans
                .iter()
                .filter(|l| st.serves(&l.name))
                .map(|l| SocketAddrV4::new(l.address.addr(), st.port))
                .collect(),
            None => Vec::new(),
        };
        // Dropping a listener closes it.
        self.status.retain(|r| wanted.contains(&r.addr));
        for addr in wanted {
            if self.status.iter().any(|r| r.addr == addr) {
                continue;
            }
            match status::http::start(addr, self.collector.clone()).await {
                Ok(running) => self.status.push(running),
                Err(e) => {
                    tracing::error!("the status page cannot listen on {addr}: {e}");
                    self.shared.error(format!("status page on {addr}: {e}"));
                }
            }
        }
    }

    /// Makes links, addresses, routes, sysctls and the ruleset match `config`
    /// (what `routerd apply` does; the daemon then also runs `ensure_services`).
    pub async fn apply(&mut self, config: &Config) -> anyhow::Result<Applied> {
        let plan = plan::plan(config);
        let applied = net::apply(&self.handle, &plan).await?;
        let links: Vec<net::Nic> = applied.lans.iter().chain(&applied.extra_wans).cloned().collect();
        for old in std::mem::replace(&mut self.lan_links, links) {
            // A removed VLAN LAN's interface is gone already; a NIC stays, bare.
            let in_use = applied.wan.index == old.index
                || applied
                    .lans
                    .iter()
                    .chain(&applied.extra_wans)
                    .any(|l| l.index == old.index);
            if !in_use && old.vlan.is_none() {
                if let Err(e) = net::release(&self.handle, &old).await {
                    tracing::warn!("cannot remove the addresses of {}, no longer used: {e:#}", old.name);
                }
            }
        }
        let ifs = Interfaces {
            wan: applied.wan.name.clone(),
            extra_wans: applied.extra_wans.iter().map(|n| n.name.clone()).collect(),
            lans: applied.lans.iter().map(|l| l.name.clone()).collect(),
        };
        // The new ruleset's forward counters start at zero: what the old ones counted,
        // read just before they go, is carried over (see `status::ForwardTotals`).
        let _ruleset = self.shared.ruleset.lock().await;
        let old = self.shared.get().forward_totals;
        let before = status::collect::forward_totals(&old).await;
        apply_ruleset(&mut self.flowtable, config, &ifs).context("applying the nftables ruleset")?;
        let totals = status::collect::carry(&Arc::new(config.clone()), before, &old);
        self.shared.update(|s| s.forward_totals = totals);
        drop(_ruleset);
        self.ensure_wireguard(config).await;
        Ok(applied)
    }

    /// The WireGuard tunnel, apart from the rest: when it fails (a kernel without
    /// WireGuard, a bad key file) that is reported and the router runs on without it.
    async fn ensure_wireguard(&mut self, config: &Config) {
        let public_key = match config
            .wireguard
            .as_ref()
            .map(|wg| crate::wireguard::keys(wg, self.state.as_ref()))
        {
            Some(Ok((_, public))) => Some(public),
            Some(Err(e)) => {
                tracing::error!("{e:#}");
                self.shared.error(format!("{e:#}"));
                None
            }
            None => None,
        };
        if public_key.is_some() && public_key != self.shared.get().wireguard_public_key {
            if let Some(key) = public_key {
                // On the console: what a peer's config needs (the private key never shows).
                tracing::info!("WireGuard public key of this router: {key}");
            }
        }
        self.shared.update(|s| s.wireguard_public_key = public_key);
        let result = crate::wireguard::ensure(&self.handle, config.wireguard.as_ref(), self.state.as_ref()).await;
        if let Err(e) = result {
            // A key error was reported above already.
            if !matches!(e, crate::wireguard::WgError::Key(_)) {
                tracing::error!("{e:#}");
                self.shared.error(format!("{e:#}"));
            }
        }
    }

    /// The daemon's services on the LAN (DHCP, status page), matched to `config`.
    pub async fn ensure_services(&mut self, config: &Config, applied: &Applied) {
        self.ensure_dhcp(config, applied).await;
        self.ensure_dns(config, applied).await;
        self.ensure_status(config).await;
        let dns_view = self.dns.as_ref().map(|d| d.view.clone());
        for e in self.proxy.ensure(config) {
            tracing::error!("{e:#}");
            self.shared.error(format!("{e:#}"));
        }
        let proxy = self.proxy.stats.clone();
        let views = self
            .dhcp
            .iter()
            .map(|d| (d.started_for.0.clone(), d.running.view.clone()))
            .collect();
        self.shared.update(|s| {
            s.config = Some(Arc::new(config.clone()));
            s.wan = Some(applied.wan.clone());
            s.extra_wans = applied.extra_wans.clone();
            s.lans = applied.lans.clone();
            s.dhcp = views;
            s.dns = dns_view;
            s.proxy = Some(proxy);
        });
    }
}

/// Applies the ruleset, with a flowtable when the kernel has them. Whether it has
/// them is learnt from the first ruleset: only when that one is rejected does the
/// flowtable probe (two more `nft` runs, slow at boot under emulation) decide
/// whether to retry without the flowtable or report the rejection.
/// (`known`: whether the kernel has flowtables, once learnt.)
fn apply_ruleset(known: &mut Option<bool>, config: &Config, ifs: &Interfaces) -> Result<(), firewall::NftError> {
    let with = |flowtable| firewall::ruleset(config, ifs, Features { flowtable });
    if let Some(flowtable) = *known {
        return firewall::apply(&with(flowtable));
    }
    let rejected = match firewall::apply(&with(true)) {
        Ok(()) => {
            *known = Some(true);
            tracing::info!("flowtable fast path enabled for established flows");
            return Ok(());
        }
        Err(e) => e,
    };
    if firewall::flowtable_supported(&ifs.wan) {
        // The flowtable was not what nft rejected; the next ruleset tries again.
        return Err(rejected);
    }
    *known = Some(false);
    tracing::warn!("this kernel has no nftables flowtable support: established flows take the normal forwarding path");
    firewall::apply(&with(false))
}

/// Loads a config file (or cloud-init drive), logging how a drive was read.
fn load(path: &Path) -> Result<(Config, String), ConfigError> {
    let loaded = Config::load_with_text(path)?;
    for note in &loaded.notes {
        tracing::info!("cloud-init: {note}");
    }
    Ok((loaded.config, loaded.text))
}

pub fn report_config_error(err: &ConfigError) {
    for line in err.to_string().lines() {
        tracing::error!("{line}");
    }
}

/// The config to start with: the given file, or, when it is invalid, the last config
/// that applied cleanly (kept in the state directory).
fn initial_config(path: &Path, state: Option<&StateDir>) -> anyhow::Result<(Config, String)> {
    let err = match load(path) {
        Ok(loaded) => return Ok(loaded),
        Err(e) => e,
    };
    report_config_error(&err);
    if let Some(last_good) = state.map(StateDir::last_good).filter(|p| p.exists()) {
        match load(&last_good) {
            Ok(loaded) => {
                tracing::warn!(
                    "{} is invalid: running the last good config {}",
                    path.display(),
                    last_good.display()
                );
                return Ok(loaded);
            }
            Err(e) => report_config_error(&e),
        }
    }
    anyhow::bail!("{}: invalid config, nothing applied", path.display())
}

/// The last good config, when there is a valid one and it is not `text` itself.
fn last_good_other_than(state: &StateDir, text: &str) -> Option<(Config, String)> {
    load(&state.last_good()).ok().filter(|(_, good)| good != text)
}

/// Runs the router on the config at `path` until SIGTERM; `set_hostname`: the host
/// name follows the config being applied (see [`crate::hostname`]).
pub async fn run(path: PathBuf, state: Option<StateDir>, set_hostname: bool) -> anyhow::Result<()> {
    let config = initial_config(&path, state.as_ref())?;
    let mut router = Router::new(state.clone())?;
    let mut hup = signal(SignalKind::hangup())?;
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;

    // The graphs: sampled every 10 s from the start, kept in the state directory.
    let history_file = state.as_ref().map(|st| st.0.join(status::history::FILE_NAME));
    let _sampler = status::sampler::start(router.collector.clone(), history_file.clone());

    let mut running: Option<Config> = None;
    // Whether the gateway answers, checked in the background once the WAN is up.
    let mut gateway_check: Option<crate::gateway::Watch> = None;
    let mut extra_gateway_checks: Vec<crate::gateway::Watch> = Vec::new();
    // Hosts on each LAN that claim the router's address there, logged.
    let mut lan_arp: Vec<net::lan_arp::Watch> = Vec::new();
    // Router advertisements on each LAN with address6, and the NDP proxy on the WAN.
    let mut adverts: Vec<crate::ra::Watch> = Vec::new();
    let mut ndp_proxy: Option<crate::ndp_proxy::Watch> = None;
    let mut pending = Some(config);
    let mut generation = 0u64;
    let mut first_failures = 0u32;
    // A reload reads and parses on a blocking thread, so that DHCP and the status page
    // keep answering however slow the file is to read.
    let mut loading: Option<JoinHandle<Result<(Config, String), ConfigError>>> = None;
    // A SIGHUP that came while a load was under way: load once more after it.
    let mut reload_again = false;
    loop {
        if let Some((config, text)) = pending.take() {
            if set_hostname {
                crate::hostname::follow(&config);
            }
            match router.apply(&config).await {
                Ok(applied) => {
                    router.ensure_services(&config, &applied).await;
                    generation += 1;
                    router.shared.update(|s| {
                        s.generation = generation;
                        s.last_reload = Some((dhcp::server::unix_now(), true));
                        s.applied_at = Some(dhcp::server::unix_now());
                    });
                    if let Some(state) = &state {
                        if let Err(e) = state.save_last_good(&text) {
                            tracing::error!("cannot save {}: {e}", state.last_good().display());
                        }
                    }
                    log_applied(&config, &applied, generation, running.is_none());
                    let target = crate::gateway::Target {
                        wan: applied.wan.name.clone(),
                        address: config.wan.address.addr(),
                        gateway: config.wan.gateway,
                        pinned: config.wan.gateway_mac,
                        extra: false,
                    };
                    gateway_check = Some(crate::gateway::ensure(
                        gateway_check.take(),
                        &router.handle,
                        target,
                        &router.shared,
                    ));
                    // The same check on each extra WAN NIC: a wrong extra MAC is named.
                    let mut previous = std::mem::take(&mut extra_gateway_checks);
                    for (nic, e) in applied.extra_wans.iter().zip(&config.wan.extra) {
                        let target = crate::gateway::Target {
                            wan: nic.name.clone(),
                            address: e.address.addr(),
                            gateway: e.gateway,
                            pinned: None,
                            extra: true,
                        };
                        let current = previous
                            .iter()
                            .position(|w| w.target == target)
                            .map(|i| previous.swap_remove(i));
                        extra_gateway_checks.push(crate::gateway::ensure(
                            current,
                            &router.handle,
                            target,
                            &router.shared,
                        ));
                    }
                    let mut old = std::mem::take(&mut lan_arp);
                    for (lan, link) in config.lans.iter().zip(&applied.lans) {
                        let ip = lan.address.addr();
                        let current = old.iter().position(|w| w.watches(link, ip)).map(|i| old.swap_remove(i));
                        lan_arp.extend(net::lan_arp::ensure(current, link, ip));
                    }
                    ensure_ipv6(&config, &applied, &router.handle, &mut adverts, &mut ndp_proxy);
                    running = Some(config);
                }
                Err(e) if running.is_none() => {
                    tracing::error!("cannot apply the config yet, retrying in {}s: {e:#}", RETRY.as_secs());
                    router.shared.error(format!("cannot apply the config: {e:#}"));
                    first_failures += 1;
                    // A valid config that cannot work (a typo in wan.mac, say) must not
                    // leave the router dead when an older config did work: after a few
                    // tries (NICs can be late) the last good one takes over.
                    let fallback = (first_failures == FALLBACK_AFTER)
                        .then(|| state.as_ref().and_then(|st| last_good_other_than(st, &text)))
                        .flatten();
                    pending = match fallback {
                        Some(last_good) => {
                            tracing::warn!("the config cannot be applied: running the last good config instead");
                            router
                                .shared
                                .error("the config cannot be applied: running the last good config instead".into());
                            Some(last_good)
                        }
                        None => Some((config, text)),
                    };
                }
                Err(e) => {
                    tracing::error!(
                        "the new config could not be applied: {e:#}; going back to generation {generation}"
                    );
                    router
                        .shared
                        .error(format!("the new config could not be applied: {e:#}"));
                    router
                        .shared
                        .update(|s| s.last_reload = Some((dhcp::server::unix_now(), false)));
                    if let Some(previous) = &running {
                        if set_hostname {
                            crate::hostname::follow(previous);
                        }
                        if let Err(e) = router.apply(previous).await {
                            tracing::error!("restoring generation {generation} failed: {e:#}");
                        }
                    }
                }
            }
        }
        tokio::select! {
            _ = hup.recv() => {
                if loading.is_some() {
                    reload_again = true;
                } else {
                    loading = Some(start_load(&path));
                }
            }
            joined = async {
                match loading.as_mut() {
                    Some(task) => task.await,
                    None => std::future::pending().await,
                }
            } => {
                loading = None;
                match joined {
                    Ok(Ok(loaded)) => pending = Some(loaded),
                    // A broken file never replaces what is running or still waiting to apply.
                    Ok(Err(e)) => rejected(&e, generation, &router.shared),
                    Err(e) => {
                        tracing::error!("loading the config failed: {e}; keeping generation {generation}");
                        router.shared.error(format!("loading the config failed: {e}"));
                        router.shared.update(|s| s.last_reload = Some((dhcp::server::unix_now(), false)));
                    }
                }
                // The file may have changed after this load read it.
                if std::mem::take(&mut reload_again) {
                    loading = Some(start_load(&path));
                }
            }
            _ = term.recv() => break,
            _ = int.recv() => break,
            _ = tokio::time::sleep(RETRY), if pending.is_some() => {}
        }
    }
    tracing::info!("routerd stopping; the network stays configured");
    router.stop().await;
    if let Some(path) = &history_file {
        status::sampler::save(&router.shared, path);
    }
    Ok(())
}

/// Starts, keeps or stops the router advertisements and the NDP proxy to match
/// `config` (a LAN that lost its address6 gets a last advertisement with router
/// lifetime 0 as its watch is dropped).
fn ensure_ipv6(
    config: &Config,
    applied: &Applied,
    handle: &rtnetlink::Handle,
    adverts: &mut Vec<crate::ra::Watch>,
    ndp_proxy: &mut Option<crate::ndp_proxy::Watch>,
) {
    let mut old = std::mem::take(adverts);
    for (lan, link) in config.lans.iter().zip(&applied.lans) {
        let Some(prefix) = lan.address6 else { continue };
        let params = crate::ra::Params {
            index: link.index,
            ifname: link.name.clone(),
            mac: link.mac,
            prefix: prefix.trunc(),
            dns: config.ra_dns(lan),
        };
        let current = old.iter().position(|w| w.params == params).map(|i| old.swap_remove(i));
        adverts.extend(crate::ra::ensure(current, params));
    }
    drop(old);
    let proxy = config
        .wan
        .v6
        .as_ref()
        .filter(|v| v.ndp_proxy)
        .map(|v6| crate::ndp_proxy::Params {
            wan_index: applied.wan.index,
            wan_name: applied.wan.name.clone(),
            lans: config
                .lans
                .iter()
                .zip(&applied.lans)
                .filter_map(|(lan, link)| {
                    Some(crate::ndp_proxy::Lan6 {
                        index: link.index,
                        ifname: link.name.clone(),
                        prefix: lan.address6?.trunc(),
                    })
                })
                .collect(),
            own: v6
                .address
                .iter()
                .map(|a| a.addr())
                .chain(config.lans.iter().filter_map(|l| l.address6.map(|a| a.addr())))
                .collect(),
        });
    match proxy {
        Some(params) => *ndp_proxy = Some(crate::ndp_proxy::ensure(ndp_proxy.take(), handle, params)),
        None => {
            if let Some(stopped) = ndp_proxy.take() {
                // The apply removed the entries, but the proxy ran until now and may
                // have added one since: remove what is left once it has stopped.
                let (handle, wan) = (handle.clone(), stopped.params.wan_index);
                drop(stopped);
                tokio::spawn(async move {
                    if let Ok(left) = net::v6::proxies(&handle, wan).await {
                        for ip in left {
                            let _ = net::v6::del_proxy(&handle, wan, ip).await;
                        }
                    }
                });
            }
        }
    }
}

fn start_load(path: &Path) -> JoinHandle<Result<(Config, String), ConfigError>> {
    tracing::info!(path = %path.display(), "SIGHUP: reloading the config");
    let path = path.to_path_buf();
    tokio::task::spawn_blocking(move || load(&path))
}

/// Reports a config that a reload refused (the running one stays).
fn rejected(err: &ConfigError, generation: u64, shared: &Shared) {
    report_config_error(err);
    for line in err.to_string().lines() {
        shared.error(line.to_string());
    }
    tracing::error!("config rejected, keeping generation {generation}");
    shared.update(|s| s.last_reload = Some((dhcp::server::unix_now(), false)));
}

fn log_applied(config: &Config, applied: &Applied, generation: u64, first: bool) {
    let lans: Vec<String> = config
        .lans
        .iter()
        .zip(&applied.lans)
        .map(|(lan, link)| {
            if lan.name == config::DEFAULT_LAN_NAME {
                format!("lan {} {}", link.name, lan.address)
            } else {
                format!("lan {} {} {}", lan.name, link.name, lan.address)
            }
        })
        .collect();
    let mut summary = format!("wan {} {}", applied.wan.name, config.wan.address);
    for a in &config.wan.more_addresses {
        summary.push_str(&format!(" {a}"));
    }
    summary.push_str(&format!(" via {}", config.wan.gateway));
    for (nic, e) in applied.extra_wans.iter().zip(&config.wan.extra) {
        summary.push_str(&format!(", wan {} {} via {}", nic.name, e.address, e.gateway));
    }
    summary.push_str(&format!(", {}, {} forwards", lans.join(", "), config.forwards.len()));
    if let Some(v6) = &config.wan.v6 {
        let address = v6.address.map_or("link-local".to_string(), |a| a.to_string());
        summary.push_str(&format!(", ipv6 {address} via {}", v6.gateway));
        if v6.ndp_proxy {
            summary.push_str(" with NDP proxy");
        }
    }
    if !config.one_to_one.is_empty() {
        summary.push_str(&format!(", {} 1:1 NAT", config.one_to_one.len()));
    }
    if first {
        tracing::info!(generation, "routerd ready: {summary}");
        // init (PID 1 of the image) names this file: it waits for it before it makes a
        // newly installed slot the default (image/CONTRACT.md).
        if let Some(path) = std::env::var_os("ROUTERD_READY_FILE") {
            if let Err(e) = std::fs::write(&path, format!("{generation}\n")) {
                tracing::warn!("cannot write {}: {e}", std::path::Path::new(&path).display());
            }
        }
    } else {
        tracing::info!(generation, "config applied: {summary}");
    }
}
