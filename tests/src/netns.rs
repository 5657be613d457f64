//! Network namespaces owned by a test: created with a unique name, removed on drop
//! (also when the test fails), never touching the machine's root namespace.

use std::fs::File;
use std::path::Path;
use std::process::{Command, Output};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Once;

use nix::sched::{setns, CloneFlags};

static COUNTER: AtomicU32 = AtomicU32::new(0);
static SWEEP: Once = Once::new();

/// A prefix no other test (or test process) uses: `rt<pid>x<n>`. The first call of a
/// test process also sweeps away what killed test processes left ([`sweep_orphans`]).
pub fn unique_prefix() -> String {
    SWEEP.call_once(sweep_orphans);
    format!("rt{}x{}", std::process::id(), COUNTER.fetch_add(1, Ordering::SeqCst))
}

/// The test process that made `name` (`rt<pid>x…`) no longer runs.
fn orphaned(name: &str) -> bool {
    name.strip_prefix("rt")
        .and_then(|rest| rest.split_once('x'))
        .and_then(|(pid, _)| pid.parse::<u32>().ok())
        .is_some_and(|pid| !Path::new(&format!("/proc/{pid}")).exists())
}

/// Drop cleans up after a failed test, but not after a test process that was killed
/// (SIGKILL, a CI timeout, Ctrl-C): its namespaces, what still runs in them (a
/// routerd, a QEMU) and its lab folders stay. Removes those of dead processes.
pub fn sweep_orphans() {
    let names = |dir: &Path| -> Vec<String> {
        std::fs::read_dir(dir)
            .map(|entries| {
                entries
                    .flatten()
                    .filter_map(|e| e.file_name().into_string().ok())
                    .filter(|n| orphaned(n))
                    .collect()
            })
            .unwrap_or_default()
    };
    for name in names(Path::new("/run/netns")) {
        drop(Netns { name });
    }
    let tmp = std::env::temp_dir();
    let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap_or_default();
    for name in names(&tmp).into_iter().filter(|n| n.ends_with("-lab")) {
        let dir = tmp.join(name);
        // A small filesystem a test mounted in its lab folder (a full state disk).
        for point in mounts.lines().filter_map(|l| l.split(' ').nth(1)) {
            if Path::new(point).starts_with(&dir) {
                let _ = Command::new("umount").args(["-l", point]).status();
            }
        }
        let _ = std::fs::remove_dir_all(dir);
    }
}

/// Runs a command, failing with its output when it exits non-zero.
pub fn run(cmd: &mut Command) -> Output {
    let out = cmd.output().unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    if !out.status.success() {
        panic!(
            "{cmd:?} failed ({}):\n{}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    out
}

pub fn sh(script: &str) -> Output {
    run(Command::new("sh").arg("-ec").arg(script))
}

pub struct Netns {
    pub name: String,
}

impl Netns {
    pub fn new(name: &str) -> Netns {
        run(Command::new("ip").args(["netns", "add", name]));
        let ns = Netns { name: name.to_string() };
        ns.ip(&["link", "set", "lo", "up"]);
        ns
    }

    /// `ip -n <ns> ARGS`
    pub fn ip(&self, args: &[&str]) -> Output {
        run(Command::new("ip").arg("-n").arg(&self.name).args(args))
    }

    /// A command that runs inside the namespace.
    pub fn command(&self, program: &str) -> Command {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.name, program]);
        cmd
    }

    /// Runs a shell script inside the namespace and returns its stdout.
    pub fn sh(&self, script: &str) -> String {
        let out = run(self.command("sh").arg("-ec").arg(script));
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    pub fn sysctl(&self, key: &str, value: &str) {
        self.sh(&format!("echo {value} > /proc/sys/{}", key.replace('.', "/")));
    }

    /// Runs `f` on a thread that lives in this namespace and waits for its result.
    /// Sockets it creates belong to the namespace and work from any thread afterwards.
    pub fn enter<F, R>(&self, f: F) -> R
    where
        F: FnOnce() -> R + Send + 'static,
        R: Send + 'static,
    {
        self.spawn(f).join().unwrap_or_else(|e| std::panic::resume_unwind(e))
    }

    /// Starts `f` on a thread that lives in this namespace.
    pub fn spawn<F, R>(&self, f: F) -> std::thread::JoinHandle<R>
    where
        F: FnOnce() -> R + Send + 'static,
        R: Send + 'static,
    {
        let path = format!("/run/netns/{}", self.name);
        std::thread::spawn(move || {
            let file = File::open(&path).unwrap_or_else(|e| panic!("open {path}: {e}"));
            setns(&file, CloneFlags::CLONE_NEWNET).unwrap_or_else(|e| panic!("setns {path}: {e}"));
            f()
        })
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        // Processes left in the namespace (a daemon, a DHCP client) go first.
        let _ = Command::new("sh")
            .arg("-c")
            .arg(format!(
                "for p in $(ip netns pids {0}); do kill -9 $p; done; ip netns del {0}",
                self.name
            ))
            .status();
    }
}

/// A veth pair with one end in each namespace, created from inside `a` so the root
/// namespace never sees it.
pub fn veth(a: &Netns, a_name: &str, b: &Netns, b_name: &str, a_mac: Option<&str>) {
    let mut args = vec!["link", "add", a_name];
    if let Some(mac) = a_mac {
        args.extend(["address", mac]);
    }
    args.extend(["type", "veth", "peer", "name", b_name, "netns", &b.name]);
    a.ip(&args);
    a.ip(&["link", "set", a_name, "up"]);
    b.ip(&["link", "set", b_name, "up"]);
}
