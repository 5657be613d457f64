//! Upgrades in place (image/CONTRACT.md, "Slots and upgrades"), the Proxmox way: a
//! new release's qcow2 attached as an extra disk. The image under test is the current
//! release; the tests build the others (`image build --build-id`, sharing its package
//! cache). Needs root, QEMU, OVMF and the built image (qemu/build).

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use testkit::dhcp_client::{Client, Kind};
use testkit::lab::CONFIG;
use testkit::vm::{config_disk, image_path, release, vm_lab, Vm, VmOptions, VmTuning, BOOT_TIMEOUT, POWEROFF_TIMEOUT};

/// An upgrade boots three times (old, new on trial, the fallback) and copies the
/// slot in between: under TCG on a loaded machine that takes a while.
const UPGRADE_TIMEOUT: Duration = Duration::from_secs(400);

fn dhcp_config() -> String {
    CONFIG
        .replace("interface = \"wan\"\n", "")
        .replace("interface = \"lan\"\n", "")
        + "\n[dhcp]\nrange = \"172.16.10.100-172.16.10.250\"\nlease_time = \"12h\"\n"
}

/// The other releases, built once per test process into `out/test-releases` (one
/// build at a time: they share the package cache).
fn release_disk(build_id: &str, routerd: Option<&Path>) -> PathBuf {
    static BUILT: Mutex<Vec<(String, PathBuf)>> = Mutex::new(Vec::new());
    let mut built = BUILT.lock().unwrap_or_else(|e| e.into_inner());
    if let Some((_, p)) = built.iter().find(|(id, _)| id == build_id) {
        return p.clone();
    }
    let dir = image_path().parent().unwrap_or(Path::new(".")).join("test-releases");
    std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    let p = release::build(&dir, build_id, routerd);
    built.push((build_id.to_string(), p.clone()));
    p
}

fn power_off(vm: &mut Vm) {
    let reply = vm.qmp("system_powerdown");
    assert!(reply.get("return").is_some(), "system_powerdown: {reply}");
    assert!(
        vm.wait_exit(POWEROFF_TIMEOUT).is_some(),
        "QEMU still runs after the ACPI power button:\n{}",
        vm.console_text()
    );
}

fn first_line(text: &str) -> &str {
    text.lines().next().unwrap_or_default()
}

/// The console from the first line containing `from` on.
fn console_after(vm: &Vm, from: &str) -> String {
    let text = vm.console_text();
    let at = text
        .find(from)
        .unwrap_or_else(|| panic!("the console never showed {from:?}:\n{text}"));
    text[at..].to_string()
}

/// The current release runs with a DHCP lease given; then the new release's disk is
/// attached (and the config disk detached): init installs it into slot b, boots it once,
/// and makes it the default when routerd is ready. The new routerd runs the last good
/// config from the state partition and restores the lease; a further boot with the
/// disk still attached runs the new release from slot b and installs nothing.
#[test]
fn an_upgrade_keeps_leases_and_config_and_runs_the_new_release() {
    if !testkit::require_root() || !testkit::require_image() {
        return;
    }
    let next = release_disk("next", None);
    let old_version = release::version_of(&image_path());
    let new_version = release::version_of(&next);
    assert_ne!(old_version, new_version);
    let lab = vm_lab();
    let config = config_disk(&lab.dir, "config", &dhcp_config(), true);
    let mut vm = Vm::start(
        &lab,
        VmOptions {
            uefi: false,
            config: Some(config),
        },
    );
    vm.wait_console("routerd ready", BOOT_TIMEOUT);
    assert!(
        vm.console_text().contains(&format!("init: router {old_version} ")),
        "{}",
        vm.console_text()
    );
    let guest = lab.add_lan_guest("up1", "52:54:00:00:50:01");
    let mut client = Client::new(Kind::Udhcpc, &guest, &lab.dir);
    client.start();
    let lease = client.wait_bound();
    client.stop();
    power_off(&mut vm);

    vm.set_tuning(VmTuning {
        extra_disk: Some(next.clone()),
        ..VmTuning::default()
    });
    vm.restart(VmOptions {
        uefi: false,
        config: None,
    });
    vm.wait_console("is now the default", UPGRADE_TIMEOUT);
    let console = vm.console_text();
    assert!(
        console.contains(&format!("init: installed {new_version} ")),
        "{console}"
    );
    // From the new release's first line on: its routerd ran the last good config
    // and found the lease the old one gave.
    let new_boot = console_after(&vm, &format!("init: router {new_version} "));
    assert!(first_line(&new_boot).ends_with(" in slot b"), "{new_boot}");
    assert!(new_boot.contains("init: slot b is on trial"), "{new_boot}");
    assert!(new_boot.contains("--config /state/last-good.toml"), "{new_boot}");
    let leases_line = new_boot
        .lines()
        .find(|l| l.contains("DHCP leases loaded"))
        .unwrap_or_else(|| panic!("no DHCP leases loaded line:\n{new_boot}"));
    assert!(
        !leases_line.contains("restored=0"),
        "the new release restored no lease ({lease:?}): {leases_line}"
    );
    assert!(new_boot.contains("routerd ready"), "{new_boot}");

    // Committed: the next boot (the disk still attached) is the new release again.
    power_off(&mut vm);
    vm.restart(VmOptions {
        uefi: false,
        config: None,
    });
    vm.wait_console("nothing to install", BOOT_TIMEOUT);
    let console = vm.console_text();
    let boot = console_after(&vm, &format!("init: router {new_version} "));
    assert!(first_line(&boot).ends_with(" in slot b"), "{console}");
    assert!(!console.contains("on trial"), "{console}");
}

/// A release whose routerd exits at once: installed, booted once, and after routerd
/// ended three times init restarts into the old slot, which runs the old release
/// again by itself and does not install the broken one again.
fn a_broken_release_falls_back(uefi: bool) {
    let broken = release_disk("broken", Some(Path::new("/bin/false")));
    let old_version = release::version_of(&image_path());
    let broken_version = release::version_of(&broken);
    let lab = vm_lab();
    let config = config_disk(&lab.dir, "config", &dhcp_config(), true);
    let mut vm = Vm::start_tuned(
        &lab,
        VmOptions {
            uefi,
            config: Some(config),
        },
        VmTuning {
            extra_disk: Some(broken),
            ..VmTuning::default()
        },
    );
    vm.wait_console("not installing it again", UPGRADE_TIMEOUT);
    let console = vm.console_text();
    assert!(
        console.contains(&format!("init: installed {broken_version} ")),
        "{console}"
    );
    let trial = console_after(&vm, &format!("init: router {broken_version} "));
    assert!(first_line(&trial).ends_with(" in slot b"), "{trial}");
    assert!(trial.contains("failed its trial (routerd ended 3 times)"), "{trial}");
    let back = console_after(&vm, "failed its trial");
    let back = &back[back.find("init: router ").unwrap_or(0)..];
    assert!(
        back.starts_with(&format!("init: router {old_version} ")) && first_line(back).ends_with(" in slot a"),
        "not back on the old release in slot a:\n{back}"
    );
    assert!(back.contains("routerd ready"), "{back}");
}

#[test]
fn a_broken_release_falls_back_by_itself_with_seabios() {
    if !testkit::require_root() || !testkit::require_image() {
        return;
    }
    a_broken_release_falls_back(false);
}

#[test]
fn a_broken_release_falls_back_by_itself_with_ovmf() {
    if !testkit::require_root() || !testkit::require_image() {
        return;
    }
    a_broken_release_falls_back(true);
}

/// QEMU killed while init copies the new release into slot b (a power cut): the next
/// boot runs the old release from slot a, installs again and ends on the new one.
/// With OVMF: the UEFI path of a good upgrade.
#[test]
fn a_power_cut_while_the_slot_is_written_leaves_a_bootable_router() {
    if !testkit::require_root() || !testkit::require_image() {
        return;
    }
    let next = release_disk("next", None);
    let old_version = release::version_of(&image_path());
    let new_version = release::version_of(&next);
    let lab = vm_lab();
    let config = config_disk(&lab.dir, "config", &dhcp_config(), true);
    let opts = || VmOptions {
        uefi: true,
        config: Some(config.clone()),
    };
    let mut vm = Vm::start_tuned(
        &lab,
        opts(),
        VmTuning {
            extra_disk: Some(next),
            ..VmTuning::default()
        },
    );
    let deadline = Instant::now() + UPGRADE_TIMEOUT;
    while !vm.console_text().contains("init: copying initrd.img") {
        assert!(Instant::now() < deadline, "no copy started:\n{}", vm.console_text());
        assert!(vm.exited().is_none(), "QEMU exited:\n{}", vm.console_text());
        std::thread::sleep(Duration::from_millis(10));
    }
    vm.hard_kill();
    let at_kill = vm.console_text();
    assert!(
        !at_kill.contains("init: installed"),
        "the copy was done before the kill: the test did not cut it short\n{at_kill}"
    );
    vm.restart(opts());
    vm.wait_console("is now the default", UPGRADE_TIMEOUT);
    let console = vm.console_text();
    let first = console_after(&vm, "init: router ");
    assert!(
        first.starts_with(&format!("init: router {old_version} ")) && first_line(&first).ends_with(" in slot a"),
        "the boot after the power cut did not run the old release from slot a:\n{console}"
    );
    let new_boot = console_after(&vm, &format!("init: router {new_version} "));
    assert!(first_line(&new_boot).ends_with(" in slot b"), "{new_boot}");
    assert!(new_boot.contains("routerd ready"), "{new_boot}");
}
