//! Figures for the appliance image (README "Figures"), each next to a baseline (this
//! machine is shared and noisy: ratios, medians). Run via `tests/bench-image`.
//!
//! 1. Sizes of the built artefacts, against OpenWrt's x86-64 combined image (a
//!    constant quoted in the issue, not measured here).
//! 2. Boot time under TCG with SeaBIOS, QEMU start to "routerd ready" and to the first
//!    DHCP ACK a real client (busybox udhcpc) gets, against the floor: the same kernel
//!    booting an initramfs whose only content is a static `/init` that powers off.
//! 3. The smallest guest RAM with which the VM boots and routes (NAT from a LAN
//!    guest), bisected, against the smallest RAM the floor boots with.
//! 4. routerd's resident memory in the VM (from its own metrics page, scraped from a
//!    LAN guest), against the same routerd binary in the namespace lab on the host.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use testkit::dhcp_client::{Client, Kind};
use testkit::http;
use testkit::lab::{Lab, Options, CONFIG, FAILOVER_IP};
use testkit::netns::run;
use testkit::traffic::{tcp_echo, EchoServer};
use testkit::vm::{config_disk, vm_lab, Vm, VmOptions, VmTuning, POWEROFF_TIMEOUT};

/// The issue's figure for OpenWrt's x86-64 combined (ext4/squashfs) image, raw.
const OPENWRT_COMBINED_BYTES: f64 = 120.0 * 1024.0 * 1024.0;
const MIB: f64 = 1024.0 * 1024.0;
/// qemu/run's default guest RAM, used for the boot-time runs.
const DEFAULT_MIB: u32 = 512;
/// 2 MiB: OVMF's floor is set by one contiguous block the kernel needs, placed by our
/// UEFI loader (README "Figures"), so it may sit between two 8 MiB steps.
const RAM_STEP_MIB: u32 = 2;

const DHCP: &str = "\n[dhcp]\nrange = \"172.16.10.100-172.16.10.250\"\nlease_time = \"12h\"\n";

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn out_dir() -> PathBuf {
    repo().join("out")
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

/// The VM's config: the lab's, NICs found the Proxmox way, DHCP on.
fn vm_config() -> String {
    CONFIG
        .replace("interface = \"wan\"\n", "")
        .replace("interface = \"lan\"\n", "")
        + DHCP
}

// ---------------------------------------------------------------- sizes

fn sizes() {
    use std::os::unix::fs::MetadataExt;
    println!(
        "## Image sizes (baseline: OpenWrt x86-64 combined image, ≈120 MiB raw, the figure quoted in the issue)\n"
    );
    println!("| artefact | bytes | MiB | ratio to OpenWrt ≈120 MiB |\n|---|---|---|---|");
    let out = out_dir();
    let row = |what: &str, bytes: u64| {
        println!(
            "| {what} | {bytes} | {:.1} | {:.2} |",
            bytes as f64 / MIB,
            bytes as f64 / OPENWRT_COMBINED_BYTES
        );
    };
    let meta = |name: &str| {
        let p = out.join(name);
        std::fs::metadata(&p).unwrap_or_else(|e| panic!("{}: {e} (build it with qemu/build)", p.display()))
    };
    let img = meta("router.img");
    row(
        "out/router.img, raw: blocks in use (sparse file, `du --block-size=1`)",
        img.blocks() * 512,
    );
    row(
        "out/router.img, raw: apparent size (64 MiB blank state partition included)",
        img.len(),
    );
    row("out/router.qcow2 (file size)", meta("router.qcow2").len());
    row(
        "out/initrd.img (init, routerd, nft, mke2fs, libraries, modules; lz4)",
        meta("initrd.img").len(),
    );
    row("out/vmlinuz (Debian kernel)", meta("vmlinuz").len());
    println!(
        "| OpenWrt x86-64 combined image, raw (the issue's figure, not measured) | {} | 120.0 | 1.00 |\n",
        OPENWRT_COMBINED_BYTES as u64
    );
}

// ---------------------------------------------------------------- the floor

const FLOOR_C: &str = r#"#include <fcntl.h>
#include <sys/mount.h>
#include <sys/reboot.h>
#include <sys/stat.h>
#include <unistd.h>
int main(void) {
    static const char msg[] = "floor: init running, powering off\n";
    mkdir("/dev", 0755);
    mount("devtmpfs", "/dev", "devtmpfs", 0, 0);
    int fd = open("/dev/console", O_WRONLY);
    if (fd >= 0) write(fd, msg, sizeof msg - 1);
    sync();
    reboot(RB_POWER_OFF);
    return 1;
}
"#;
const FLOOR_MARK: &str = "floor: init running";

/// An uncompressed newc initramfs holding only a static `/init` that powers off.
fn build_floor(dir: &Path) -> PathBuf {
    let root = dir.join("floor-root");
    std::fs::create_dir_all(&root).expect("floor dir");
    let src = dir.join("floor.c");
    std::fs::write(&src, FLOOR_C).expect("floor.c");
    run(Command::new("gcc")
        .args(["-static", "-Os", "-s", "-o"])
        .arg(root.join("init"))
        .arg(&src));
    let cpio = dir.join("floor.cpio");
    let file = std::fs::File::create(&cpio).expect("floor.cpio");
    let status = Command::new("sh")
        .arg("-ec")
        .arg("printf 'init\\n' | cpio --quiet -o -H newc -R 0:0")
        .current_dir(&root)
        .stdout(file)
        .status()
        .expect("cpio");
    assert!(status.success(), "cpio failed");
    cpio
}

/// Boots out/vmlinuz with the floor initramfs (TCG, SeaBIOS, -nodefaults, no NIC at
/// all, same machine and CPU count as qemu/run). Returns (seconds to the init's
/// console line, seconds to QEMU's exit), or None if it did not power off in time.
fn boot_floor(dir: &Path, initrd: &Path, mib: u32) -> Option<(f64, f64)> {
    let console = dir.join("floor-console.log");
    let _ = std::fs::remove_file(&console);
    let start = Instant::now();
    let mut child = Command::new("qemu-system-x86_64")
        .args([
            "-nodefaults",
            "-no-user-config",
            "-accel",
            "tcg",
            "-machine",
            "pc",
            "-smp",
            "1",
            "-display",
            "none",
        ])
        .args(["-m", &mib.to_string(), "-no-reboot"])
        .arg("-kernel")
        .arg(out_dir().join("vmlinuz"))
        .arg("-initrd")
        .arg(initrd)
        // acpi=noirq as the appliance's syslinux entries have it (image/src/disk.rs
        // BIOS_CMDLINE): a kernel option the appliance boots with, the floor boots with
        // too (it skips the ACPI interrupt links' set-up here as well).
        .args(["-append", "console=ttyS0,115200 loglevel=4 panic=-1 acpi=noirq"])
        .arg("-serial")
        .arg(format!("file:{}", console.display()))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("qemu-system-x86_64");
    let deadline = start + Duration::from_secs(60);
    let mut mark = None;
    loop {
        if mark.is_none()
            && std::fs::read_to_string(&console)
                .unwrap_or_default()
                .contains(FLOOR_MARK)
        {
            mark = Some(start.elapsed().as_secs_f64());
        }
        if child.try_wait().ok().flatten().is_some() {
            let exit = start.elapsed().as_secs_f64();
            if mark.is_none()
                && std::fs::read_to_string(&console)
                    .unwrap_or_default()
                    .contains(FLOOR_MARK)
            {
                mark = Some(exit);
            }
            return mark.map(|m| (m, exit));
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

// ---------------------------------------------------------------- the appliance

struct Boot {
    ready: f64,
    ack: f64,
    second_ready: f64,
    rss_bytes: f64,
}

fn until<T>(timeout: Duration, mut f: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return Some(v);
        }
        if Instant::now() > deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn scrape_rss(lab: &Lab) -> f64 {
    let text = until(Duration::from_secs(30), || {
        match http::get(&lab.guest, "172.16.0.1:80", "/metrics") {
            Ok((200, body)) => Some(body),
            _ => None,
        }
    })
    .expect("the metrics page from a LAN guest");
    http::metric(&text, "process_resident_memory_bytes", &[]).expect("process_resident_memory_bytes")
}

/// One fresh VM: first boot (the state partition is made), a udhcpc guest started at
/// "routerd ready", the metrics scraped, power-off, second boot from the same disk.
fn boot_appliance() -> Boot {
    let lab = vm_lab();
    let config = config_disk(&lab.dir, "config", &vm_config(), true);
    let mut vm = Vm::start(
        &lab,
        VmOptions {
            uefi: false,
            config: Some(config.clone()),
        },
    );
    let ready = vm
        .poll_console("routerd ready", &["Kernel panic"], Duration::from_secs(180))
        .expect("routerd ready");
    let guest = lab.add_lan_guest("bench1", "52:54:00:00:50:01");
    let mut client = Client::new(Kind::Udhcpc, &guest, &lab.dir);
    client.start();
    let ack = until(Duration::from_secs(60), || {
        client.events().iter().any(|e| e.event == "bound").then(|| vm.elapsed())
    })
    .expect("a DHCP lease")
    .as_secs_f64();
    client.stop();
    let rss_bytes = scrape_rss(&lab);
    let _ = vm.qmp("system_powerdown");
    assert!(vm.wait_exit(POWEROFF_TIMEOUT).is_some(), "no power-off");
    vm.restart(VmOptions {
        uefi: false,
        config: Some(config),
    });
    let second_ready = vm
        .poll_console("routerd ready", &["Kernel panic"], Duration::from_secs(180))
        .expect("routerd ready (second boot)");
    Boot {
        ready: ready.as_secs_f64(),
        ack,
        second_ready: second_ready.as_secs_f64(),
        rss_bytes,
    }
}

/// Rounds of the boot-time runs: each round boots the floor, then the appliance, so
/// that both see the same state of this shared machine; each ratio is the median of the
/// rounds' ratios.
const BOOT_ROUNDS: usize = 5;

fn boot_times(work: &Path) -> (Vec<Boot>, f64) {
    let floor = build_floor(work);
    let mut floor_mark = Vec::new();
    let mut floor_exit = Vec::new();
    let mut boots = Vec::new();
    for _ in 0..BOOT_ROUNDS {
        let (m, e) = boot_floor(work, &floor, DEFAULT_MIB).expect("the floor boots and powers off");
        floor_mark.push(m);
        floor_exit.push(e);
        boots.push(boot_appliance());
    }
    let ratio = |f: &dyn Fn(&Boot) -> f64| median(boots.iter().zip(&floor_mark).map(|(b, m)| f(b) / m).collect());
    let floor = median(floor_mark.clone());
    let ready = median(boots.iter().map(|b| b.ready).collect());
    let ack = median(boots.iter().map(|b| b.ack).collect());
    let second = median(boots.iter().map(|b| b.second_ready).collect());
    println!(
        "## Boot time under TCG, SeaBIOS, {DEFAULT_MIB} MiB, 1 vCPU (s from QEMU start: median of {BOOT_ROUNDS} rounds; ratio: median of the rounds' ratios)\n"
    );
    println!("Baseline (the floor): the same kernel (`-kernel out/vmlinuz`) with an initramfs holding only a");
    println!("static `/init` that prints a line and powers off. The appliance boots from its disk");
    println!("(SeaBIOS → syslinux → kernel + 8 MB LZ4 initramfs), so the ratio includes the boot loader.");
    println!("Each round boots the floor, then the appliance.\n");
    println!("| milestone | s | ratio to the floor |\n|---|---|---|");
    println!("| floor: trivial init runs (baseline) | {floor:.1} | 1.00 |");
    println!(
        "| floor: QEMU exits after power-off | {:.1} | {:.2} |",
        median(floor_exit.clone()),
        median(floor_exit.iter().zip(&floor_mark).map(|(e, m)| e / m).collect())
    );
    println!(
        "| appliance, first boot (makes the state filesystem): \"routerd ready\" | {ready:.1} | {:.2} |",
        ratio(&|b| b.ready)
    );
    println!(
        "| appliance, first boot: first DHCP ACK (udhcpc started at \"routerd ready\") | {ack:.1} | {:.2} |",
        ratio(&|b| b.ack)
    );
    println!(
        "| appliance, second boot from the same disk: \"routerd ready\" | {second:.1} | {:.2} |\n",
        ratio(&|b| b.second_ready)
    );
    eprintln!(
        "samples floor={floor_mark:?} floor_exit={floor_exit:?} ready={:?} ack={:?} second={:?}",
        boots.iter().map(|b| b.ready).collect::<Vec<_>>(),
        boots.iter().map(|b| b.ack).collect::<Vec<_>>(),
        boots.iter().map(|b| b.second_ready).collect::<Vec<_>>()
    );
    (boots, ready)
}

// ---------------------------------------------------------------- RAM

/// Whether the appliance boots with `mib` MiB (SeaBIOS, or OVMF with `uefi`) and NATs
/// a LAN guest's connection.
fn boots_and_routes(mib: u32, uefi: bool, timeout: Duration) -> bool {
    let lab = vm_lab();
    let config = config_disk(&lab.dir, "config", &vm_config(), true);
    let mut vm = Vm::start_tuned(
        &lab,
        VmOptions {
            uefi,
            config: Some(config),
        },
        VmTuning {
            memory_mib: Some(mib),
            ..VmTuning::default()
        },
    );
    let ok = vm
        // Our UEFI loader's error line (no room for the kernel's block); an initramfs
        // the kernel could not unpack whole; the firmware's exception dump.
        .poll_console(
            "routerd ready",
            &[
                "Kernel panic",
                "Out of memory",
                "efiboot: ",
                "Initramfs unpacking failed",
                "X64 Exception",
            ],
            timeout,
        )
        .is_some()
        && {
            let server = EchoServer::tcp(&lab.inet, "198.51.100.1:7000");
            until(Duration::from_secs(20), || {
                tcp_echo(&lab.guest, "198.51.100.1:7000", "ram").ok()
            })
            .is_some()
                && server.last_peer_ip().as_deref() == Some(FAILOVER_IP)
                && !vm.console_text().contains("Out of memory")
        };
    let tail: Vec<String> = vm.console_text().lines().rev().take(2).map(str::to_string).collect();
    eprintln!(
        "ram: {} {mib} MiB -> {} (console ends {:?})",
        if uefi { "OVMF" } else { "SeaBIOS" },
        if ok { "boots and routes" } else { "fails" },
        tail
    );
    ok
}

/// The smallest size in [lo, hi] (in RAM_STEP_MIB steps) for which `ok` holds,
/// assuming `ok(hi)` and that more RAM never hurts; `lo` itself if `ok(lo)`.
fn bisect(lo: u32, hi: u32, mut ok: impl FnMut(u32) -> bool) -> u32 {
    if ok(lo) {
        return lo;
    }
    let (mut bad, mut good) = (lo, hi);
    while good - bad > RAM_STEP_MIB {
        let mid = (bad + (good - bad) / 2) / RAM_STEP_MIB * RAM_STEP_MIB;
        let mid = mid.max(bad + RAM_STEP_MIB).min(good - RAM_STEP_MIB);
        if ok(mid) {
            good = mid;
        } else {
            bad = mid;
        }
    }
    good
}

fn min_ram(work: &Path, ready_secs: f64) {
    let floor = build_floor(work);
    let floor_min = bisect(16, DEFAULT_MIB, |mib| {
        let r = boot_floor(work, &floor, mib).is_some();
        eprintln!("ram: floor {mib} MiB -> {}", if r { "boots" } else { "fails" });
        r
    });
    let timeout = Duration::from_secs_f64((ready_secs * 3.0).max(45.0));
    let appliance_min = bisect(64, DEFAULT_MIB, |mib| boots_and_routes(mib, false, timeout));
    // OVMF boots take longer under TCG (the firmware itself, then systemd-boot).
    let uefi_timeout = timeout.max(Duration::from_secs(120));
    let uefi_min = bisect(64, DEFAULT_MIB, |mib| boots_and_routes(mib, true, uefi_timeout));
    println!("## Smallest guest RAM (MiB, bisected in {RAM_STEP_MIB} MiB steps, TCG)\n");
    println!("Appliance: boots to \"routerd ready\" and NATs a LAN guest's TCP connection to the internet host");
    println!("(no \"Out of memory\" on the console). Baseline: the floor (same kernel, trivial init) boots.\n");
    println!("| what | MiB | ratio to the floor |\n|---|---|---|");
    println!("| floor: kernel + trivial init (baseline) | {floor_min} | 1.00 |");
    println!(
        "| appliance, SeaBIOS: boots and routes | {appliance_min} | {:.2} |",
        f64::from(appliance_min) / f64::from(floor_min)
    );
    println!(
        "| appliance, OVMF: boots and routes | {uefi_min} | {:.2} |\n",
        f64::from(uefi_min) / f64::from(floor_min)
    );
}

// ---------------------------------------------------------------- routerd's memory

/// The same routerd (the release build the image carries) in the host namespace lab,
/// same config with DHCP, after one lease, scraped the same way.
fn host_rss() -> f64 {
    let mut lab = Lab::new(Options { wan_mac: None });
    lab.start_routerd(&(CONFIG.to_string() + DHCP));
    let guest = lab.add_lan_guest("bench2", "52:54:00:00:50:02");
    let mut client = Client::new(Kind::Udhcpc, &guest, &lab.dir);
    client.start();
    client.wait_bound();
    client.stop();
    scrape_rss(&lab)
}

fn rss(boots: &[Boot]) {
    let vm = median(boots.iter().map(|b| b.rss_bytes).collect());
    let host = host_rss();
    println!("## routerd resident memory (process_resident_memory_bytes from its /metrics, scraped from a LAN guest after one DHCP lease)\n");
    println!("| where | KiB | ratio |\n|---|---|---|");
    println!(
        "| same routerd binary in the namespace lab on the host (baseline) | {:.0} | 1.00 |",
        host / 1024.0
    );
    println!(
        "| in the VM (median of {} boots) | {:.0} | {:.2} |\n",
        boots.len(),
        vm / 1024.0,
        vm / host
    );
}

fn main() {
    let which: Vec<String> = std::env::args().skip(1).collect();
    let want = |name: &str| which.is_empty() || which.iter().any(|w| w == name);
    let work = std::env::temp_dir().join(format!("bench-image-{}", std::process::id()));
    std::fs::create_dir_all(&work).expect("work dir");
    let started = Instant::now();
    if want("sizes") {
        sizes();
    }
    let mut ready = 20.0;
    if want("boot") || want("rss") || want("ram") {
        let (boots, r) = boot_times(&work);
        ready = r;
        if want("rss") {
            rss(&boots);
        }
    }
    if want("ram") {
        min_ram(&work, ready);
    }
    let _ = std::fs::remove_dir_all(&work);
    eprintln!("bench-image took {:.0} s", started.elapsed().as_secs_f64());
}
