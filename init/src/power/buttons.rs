//! The ACPI power button: an evdev input device named "Power Button", found
//! in `/sys/class/input`, whose `struct input_event` records are read for a
//! KEY_POWER press.

use crate::console::say;
use std::collections::HashSet;
use std::fs::{File, OpenOptions};
use std::io::Read;
use std::os::unix::fs::OpenOptionsExt;

const SYS_INPUT: &str = "/sys/class/input";
const BUTTON_NAME: &str = "Power Button";

pub const EV_KEY: u16 = 1;
pub const KEY_POWER: u16 = 116;

/// Size of `struct input_event`: a `struct timeval` made of two kernel
/// longs (16 bytes on x86_64), then type u16, code u16, value i32.
pub const INPUT_EVENT_SIZE: usize = 2 * std::mem::size_of::<std::ffi::c_ulong>() + 8;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InputEvent {
    pub kind: u16,
    pub code: u16,
    pub value: i32,
}

impl InputEvent {
    /// A press (not the release, nor autorepeat) of KEY_POWER.
    pub fn is_power_press(&self) -> bool {
        self.kind == EV_KEY && self.code == KEY_POWER && self.value == 1
    }
}

/// The whole `struct input_event` records in `buf` (records of
/// `record_size` bytes; a trailing partial record is ignored).
pub fn parse_input_events(buf: &[u8], record_size: usize) -> Vec<InputEvent> {
    if record_size < 8 {
        return Vec::new();
    }
    let time = record_size - 8;
    buf.chunks_exact(record_size)
        .filter_map(|rec| {
            let f = rec.get(time..)?;
            Some(InputEvent {
                kind: u16::from_le_bytes([*f.first()?, *f.get(1)?]),
                code: u16::from_le_bytes([*f.get(2)?, *f.get(3)?]),
                value: i32::from_le_bytes([*f.get(4)?, *f.get(5)?, *f.get(6)?, *f.get(7)?]),
            })
        })
        .collect()
}

/// Whether an input device's name (`/sys/class/input/eventN/device/name`)
/// is an ACPI power button.
pub fn is_power_button_name(name: &str) -> bool {
    name.trim_end() == BUTTON_NAME
}

/// The power buttons being watched.
#[derive(Debug, Default)]
pub struct Buttons {
    open: Vec<(String, File)>,
    /// eventN names already looked at (button or not).
    seen: HashSet<String>,
}

impl Buttons {
    /// Opens power buttons that appeared since the last scan.
    pub fn scan(&mut self) {
        let Ok(entries) = std::fs::read_dir(SYS_INPUT) else {
            return;
        };
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if !name.starts_with("event") || self.seen.contains(&name) {
                continue;
            }
            let Ok(dev_name) = std::fs::read_to_string(entry.path().join("device/name")) else {
                continue;
            };
            self.seen.insert(name.clone());
            if !is_power_button_name(&dev_name) {
                continue;
            }
            let node = format!("/dev/input/{name}");
            match OpenOptions::new()
                .read(true)
                .custom_flags(nix::libc::O_NONBLOCK)
                .open(&node)
            {
                Ok(f) => {
                    say(&format!("init: watching power button {node}"));
                    self.open.push((name, f));
                }
                Err(e) => {
                    say(&format!("init: cannot open power button {node}: {e}"));
                    // Try again on the next scan.
                    self.seen.remove(&name);
                }
            }
        }
    }

    pub fn files(&self) -> impl Iterator<Item = &File> {
        self.open.iter().map(|(_, f)| f)
    }

    /// Reads what button `index` has; true if it was pressed. A device
    /// that fails (removed) is dropped.
    pub fn pressed(&mut self, index: usize) -> bool {
        let Some((_, file)) = self.open.get_mut(index) else {
            return false;
        };
        let mut buf = [0u8; INPUT_EVENT_SIZE * 32];
        let mut pressed = false;
        loop {
            match file.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => {
                    let events = buf.get(..n).map(|b| parse_input_events(b, INPUT_EVENT_SIZE));
                    pressed |= events.unwrap_or_default().iter().any(InputEvent::is_power_press);
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    let (name, _) = self.open.remove(index);
                    say(&format!("init: power button {name}: {e}; no longer watched"));
                    self.seen.remove(&name);
                    break;
                }
            }
        }
        pressed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(kind: u16, code: u16, value: i32) -> Vec<u8> {
        let mut r = vec![0xAAu8; 16]; // timeval
        r.extend_from_slice(&kind.to_le_bytes());
        r.extend_from_slice(&code.to_le_bytes());
        r.extend_from_slice(&value.to_le_bytes());
        r
    }

    #[test]
    fn event_size_on_64_bit() {
        #[cfg(target_pointer_width = "64")]
        assert_eq!(INPUT_EVENT_SIZE, 24);
    }

    #[test]
    fn power_press_then_release() {
        // What the ACPI button driver sends: press, sync, release, sync.
        let mut buf = record(EV_KEY, KEY_POWER, 1);
        buf.extend(record(0, 0, 0));
        buf.extend(record(EV_KEY, KEY_POWER, 0));
        buf.extend(record(0, 0, 0));
        let events = parse_input_events(&buf, 24);
        assert_eq!(events.len(), 4);
        assert_eq!(
            events[0],
            InputEvent {
                kind: EV_KEY,
                code: KEY_POWER,
                value: 1
            }
        );
        assert!(events[0].is_power_press());
        assert!(!events[1].is_power_press());
        assert!(!events[2].is_power_press(), "release is not a press");
    }

    #[test]
    fn other_keys_and_repeats_are_not_presses() {
        assert!(!parse_input_events(&record(EV_KEY, 142, 1), 24)[0].is_power_press()); // KEY_SLEEP
        assert!(!parse_input_events(&record(EV_KEY, KEY_POWER, 2), 24)[0].is_power_press());
        assert!(!parse_input_events(&record(4, KEY_POWER, 1), 24)[0].is_power_press());
        // EV_MSC
    }

    #[test]
    fn partial_records_are_ignored() {
        let buf = record(EV_KEY, KEY_POWER, 1);
        assert!(parse_input_events(&buf[..23], 24).is_empty());
        assert!(parse_input_events(&[], 24).is_empty());
        assert!(parse_input_events(&buf, 0).is_empty());
        let mut two = buf.clone();
        two.extend_from_slice(&buf[..10]);
        assert_eq!(parse_input_events(&two, 24).len(), 1);
    }

    #[test]
    fn negative_values() {
        let e = parse_input_events(&record(2, 0, -5), 24);
        assert_eq!(e[0].value, -5);
    }

    #[test]
    fn thirty_two_bit_records() {
        let mut r = vec![0u8; 8];
        r.extend_from_slice(&EV_KEY.to_le_bytes());
        r.extend_from_slice(&KEY_POWER.to_le_bytes());
        r.extend_from_slice(&1i32.to_le_bytes());
        assert!(parse_input_events(&r, 16)[0].is_power_press());
    }

    #[test]
    fn button_names() {
        assert!(is_power_button_name("Power Button\n"));
        assert!(!is_power_button_name("Sleep Button\n"));
        assert!(!is_power_button_name("AT Translated Set 2 keyboard\n"));
    }
}
