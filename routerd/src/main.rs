//! The routerd command line.

use std::path::PathBuf;
use std::process::ExitCode;

use config::Config;
use routerd::daemon::{self, Router};
use routerd::firewall::{self, Features, Interfaces};
use routerd::plan;
use routerd::state::StateDir;

const USAGE: &str = "usage:
  routerd check FILE|DIR             validate a config: prints `ok` or every error
                                     (DIR: a mounted cloud-init drive)
  routerd cloud-init DIR             print the router.toml made from a mounted
                                     cloud-init (NoCloud) drive, notes on stderr
  routerd run --config FILE [--state DIR] [--set-hostname]
                                     run the router (SIGHUP reloads the config); DIR keeps
                                     the last good config and the DHCP leases;
                                     --set-hostname: the host name follows the config
  routerd apply --config FILE        apply the config once and exit
  routerd --version                  print the release: version and payload checksum
  routerd render --config FILE [--wan NAME] [--extra-wan NAME]... [--lan NAME] [--flowtable]
                                     print the network plan and the nftables ruleset
                                     (the NICs of wan.extra: --extra-wan in order, else wan1, wan2...)
  routerd wireguard pubkey [--config FILE] [--state DIR]
                                     print the router's WireGuard public key (the private
                                     key is made in DIR if there is none yet)
  routerd wireguard peer-config NAME [--config FILE] [--state DIR] [--router-key KEY]
                                     print the wg-quick config of the peer NAME
                                     (--router-key: the router's public key as its console
                                     and status page show it, e.g. on a workstation)
                                     (defaults: /config/router.toml, else DIR/last-good.toml;
                                     DIR /state)";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    match args.as_slice() {
        ["check", file] => check(file),
        ["cloud-init", dir] => cloud_init(dir),
        ["run", rest @ ..] => match RunArgs::parse(rest) {
            Some(run) => daemon_main(run, false),
            None => {
                eprintln!("{USAGE}");
                ExitCode::from(2)
            }
        },
        ["apply", "--config", file] => daemon_main(
            RunArgs {
                config: PathBuf::from(file),
                state: None,
                set_hostname: false,
            },
            true,
        ),
        ["render", "--config", file, rest @ ..] => render(file, rest),
        ["wireguard", "pubkey", rest @ ..] => wireguard(None, rest),
        ["wireguard", "peer-config", name, rest @ ..] => wireguard(Some(name), rest),
        ["--version" | "-V" | "version"] => {
            println!("routerd {}", config::release::running().display());
            ExitCode::SUCCESS
        }
        ["--help" | "-h" | "help"] => {
            println!("{USAGE}");
            ExitCode::SUCCESS
        }
        _ => {
            eprintln!("{USAGE}");
            ExitCode::from(2)
        }
    }
}

/// `routerd run`'s options, in any order.
struct RunArgs {
    config: PathBuf,
    state: Option<StateDir>,
    set_hostname: bool,
}

impl RunArgs {
    fn parse(args: &[&str]) -> Option<RunArgs> {
        let (mut config, mut state, mut set_hostname) = (None, None, false);
        let mut it = args.iter();
        while let Some(arg) = it.next() {
            match *arg {
                "--config" if config.is_none() => config = Some(PathBuf::from(it.next()?)),
                "--state" if state.is_none() => state = Some(StateDir(PathBuf::from(it.next()?))),
                "--set-hostname" if !set_hostname => set_hostname = true,
                _ => return None,
            }
        }
        Some(RunArgs {
            config: config?,
            state,
            set_hostname,
        })
    }
}

fn check(file: &str) -> ExitCode {
    match Config::load(file.as_ref()) {
        Ok(_) => {
            println!("ok");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("{e}");
            ExitCode::FAILURE
        }
    }
}

fn cloud_init(dir: &str) -> ExitCode {
    let generated = match config::cloudinit::generate(dir.as_ref()) {
        Ok(g) => g,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::FAILURE;
        }
    };
    for note in &generated.notes {
        eprintln!("note: {note}");
    }
    print!("{}", generated.toml);
    // What was made must also be a valid config; say so now rather than at boot.
    match Config::parse(&generated.toml, &generated.origin) {
        Ok(_) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{e}");
            ExitCode::FAILURE
        }
    }
}

fn daemon_main(args: RunArgs, once: bool) -> ExitCode {
    let RunArgs {
        config: path,
        state,
        set_hostname,
    } = args;
    routerd::logging::init();
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            tracing::error!("cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        if once {
            let config = Config::load(&path).map_err(|e| {
                daemon::report_config_error(&e);
                anyhow::anyhow!("{}: invalid config, nothing applied", path.display())
            })?;
            let applied = Router::new(None)?.apply(&config).await?;
            let lans: Vec<&str> = applied.lans.iter().map(|l| l.name.as_str()).collect();
            tracing::info!(wan = %applied.wan.name, lans = %lans.join(","), "config applied");
            Ok(())
        } else {
            daemon::run(path, state, set_hostname).await
        }
    });
    // A config load still reading on a blocking thread must not hold up the exit.
    runtime.shutdown_background();
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e:#}");
            ExitCode::FAILURE
        }
    }
}

fn render(file: &str, rest: &[&str]) -> ExitCode {
    let config = match Config::load(file.as_ref()) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::FAILURE;
        }
    };
    let (mut wan, mut lan, mut flowtable) = ("wan", "lan", false);
    let mut extra_wans: Vec<String> = Vec::new();
    let mut it = rest.iter();
    while let Some(arg) = it.next() {
        match (*arg, it.clone().next()) {
            ("--wan", Some(v)) => {
                wan = v;
                it.next();
            }
            ("--extra-wan", Some(v)) => {
                extra_wans.push(v.to_string());
                it.next();
            }
            ("--lan", Some(v)) => {
                lan = v;
                it.next();
            }
            ("--flowtable", _) => flowtable = true,
            _ => {
                eprintln!("{USAGE}");
                return ExitCode::from(2);
            }
        }
    }
    print!("{}", plan::plan(&config));
    let mut ifs = Interfaces::placeholders(&config, wan, lan);
    for (name, given) in ifs.extra_wans.iter_mut().zip(extra_wans) {
        *name = given;
    }
    let batch = firewall::ruleset(&config, &ifs, Features { flowtable });
    match serde_json::to_string_pretty(&batch) {
        Ok(json) => {
            println!("{json}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("cannot serialize the ruleset: {e}");
            ExitCode::FAILURE
        }
    }
}

/// `routerd wireguard pubkey` and `routerd wireguard peer-config NAME`.
fn wireguard(peer: Option<&str>, rest: &[&str]) -> ExitCode {
    let (mut config_path, mut state) = (None, StateDir(PathBuf::from(config::image::STATE_MOUNT)));
    let mut router_key = None;
    let mut it = rest.iter();
    while let Some(arg) = it.next() {
        match (*arg, it.next()) {
            ("--config", Some(v)) => config_path = Some(PathBuf::from(v)),
            ("--state", Some(v)) => state = StateDir(PathBuf::from(v)),
            ("--router-key", Some(v)) if peer.is_some() => match v.parse::<config::wireguard::Key>() {
                Ok(k) => router_key = Some(k),
                Err(()) => {
                    eprintln!("--router-key {v:?}: not a WireGuard public key (44 base64 characters)");
                    return ExitCode::from(2);
                }
            },
            _ => {
                eprintln!("{USAGE}");
                return ExitCode::from(2);
            }
        }
    }
    // On the appliance: the config disk's file, else (a cloud-init drive) the last
    // config that applied.
    let config_path = config_path.unwrap_or_else(|| {
        let disk = PathBuf::from(config::image::CONFIG_FILE);
        if disk.exists() {
            disk
        } else {
            state.last_good()
        }
    });
    let config = match Config::load(&config_path) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::FAILURE;
        }
    };
    let Some(wg) = &config.wireguard else {
        eprintln!("{}: no [wireguard] section", config_path.display());
        return ExitCode::FAILURE;
    };
    // A peer config names the router's key: off the router (no key file there) a new
    // key would make a config that never connects, so none is made for it.
    if peer.is_some() && router_key.is_none() {
        if let Ok(path) = routerd::wireguard::key::path(&wg.private_key_file, Some(&state)) {
            if !path.exists() {
                eprintln!(
                    "no router key at {}: away from the router, pass --router-key with its public key \
                     (its console and status page show it)",
                    path.display()
                );
                return ExitCode::FAILURE;
            }
        }
    }
    let public = match router_key.map_or_else(|| routerd::wireguard::keys(wg, Some(&state)).map(|(_, p)| p), Ok) {
        Ok(public) => public,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::FAILURE;
        }
    };
    match peer {
        None => println!("{public}"),
        Some(name) => {
            let Some(p) = wg.peer_named(name) else {
                let names: Vec<&str> = wg.peers.iter().map(|p| p.name.as_str()).collect();
                eprintln!(
                    "{}: no [[wireguard.peer]] is named {name:?} (peers: {})",
                    config_path.display(),
                    names.join(", ")
                );
                return ExitCode::FAILURE;
            };
            print!("{}", routerd::wireguard::peer_config::render(&config, wg, p, &public));
        }
    }
    ExitCode::SUCCESS
}
