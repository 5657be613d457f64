//! The appliance's UEFI loader (`a/linux.efi`, `b/linux.efi`; image/CONTRACT.md).
//!
//! systemd-boot starts it with the entry's `options` as LoadOptions: the kernel's path,
//! then the kernel command line, whose `initrd=PATH` names the initramfs. The kernel
//! unpacks itself in one block of `init_size` bytes, 2 MiB-aligned, at or above 16 MiB;
//! the loader takes the lowest such block that holds only memory free once the firmware
//! is gone (free now, or the firmware's boot-time memory), reads the kernel and the
//! initrd from the ESP into its free parts, leaves the firmware (ExitBootServices), and
//! only then moves the initrd out of the block and the kernel to its start. The kernel's
//! own EFI stub must find a free block while the firmware still holds its boot-time
//! memory, which under OVMF needs far more RAM. It enters the kernel through the 64-bit
//! boot protocol (Linux's Documentation/arch/x86/boot.rst), with `efi_info` set so that
//! the kernel keeps the EFI runtime services (EFI variables).
//!
//! Built for the host target as a static position-independent ELF (build.rs); the image
//! builder converts it to PE32+ (image/src/pe.rs).

// Unit tests build for the host with std and its test harness.
#![cfg_attr(not(test), no_std)]

pub mod efi;
#[cfg(not(test))]
mod mem;

use core::arch::asm;
use core::ptr::{addr_of, addr_of_mut};

use efi::{Status, SystemTable};

const MIB: u64 = 1 << 20;
/// LOAD_PHYSICAL_ADDR of Debian's kernels, and the least the decompressor accepts.
const MIN_KERNEL_ADDR: u64 = 16 * MIB;
/// Our own stack for the last steps, once the firmware's may be overwritten.
const STACK_PAGES: usize = 16;
const MAX_E820: usize = 128;
/// Our identity map after ExitBootServices: the firmware's page tables lie in its
/// boot-time memory and map some of it read-only (its drivers' code), memory the
/// kernel and initrd are moved over. 64 GiB: where the firmware puts what we load.
const MAPPED_GIB: u64 = 64;
const PAGE_TABLE_PAGES: usize = 2 + MAPPED_GIB as usize;
/// The highest address of what the last steps touch (the stack, the kernel as read):
/// inside our identity map whatever the VM's RAM.
const MAPPED_MAX: u64 = (MAPPED_GIB << 30) - 1;
/// Free ranges inside the kernel's block.
const MAX_PIECES: usize = 32;

/// What the last steps (after ExitBootServices, on our own stack) need. A static, in
/// the loader's own image: memory the kernel is never placed over.
struct Handoff {
    system_table: u64,
    runtime: *const efi::RuntimeServices,
    boot_params: *mut u8,
    /// The protected-mode part of the kernel file, and its length.
    kernel: *const u8,
    kernel_len: u64,
    /// The kernel's block: init_size rounded up to the alignment.
    init_size: u64,
    align: u64,
    map: *mut u8,
    map_size: usize,
    desc_size: usize,
    desc_version: u32,
    page_tables: u64,
    /// The initrd as read, and whether it lies in the kernel's block (to be moved out).
    initrd: *const u8,
    initrd_len: u64,
    initrd_max: u64,
    initrd_moves: bool,
    /// Where the kernel goes, and the free memory there we took (loader data).
    dest: u64,
    reserved: [(u64, u64); MAX_PIECES],
    reserved_len: usize,
}

static mut HANDOFF: Handoff = Handoff {
    system_table: 0,
    runtime: core::ptr::null(),
    boot_params: core::ptr::null_mut(),
    kernel: core::ptr::null(),
    kernel_len: 0,
    init_size: 0,
    align: 0,
    map: core::ptr::null_mut(),
    map_size: 0,
    desc_size: 0,
    desc_version: 0,
    page_tables: 0,
    initrd: core::ptr::null(),
    initrd_len: 0,
    initrd_max: 0,
    initrd_moves: false,
    dest: 0,
    reserved: [(0, 0); MAX_PIECES],
    reserved_len: 0,
};

/// Flat 64-bit code at __BOOT_CS (0x10), flat data at __BOOT_DS (0x18).
#[repr(C, align(16))]
struct Gdt([u64; 4]);
static GDT: Gdt = Gdt([0, 0, 0x00af_9a00_0000_ffff, 0x00cf_9200_0000_ffff]);

/// What the binary's panic handler does: a line on COM1, then halt.
pub fn halt() -> ! {
    serial_line(b"efiboot: internal error (panic)");
    loop {
        // SAFETY: halting is always allowed here.
        unsafe { asm!("hlt") };
    }
}

/// # Safety
/// Called by the firmware with a valid image handle and system table.
pub unsafe fn main(image: efi::Handle, st: *const SystemTable) -> Status {
    let st = &*st;
    match run(image, st) {
        Ok(never) => match never {},
        Err((status, msg, detail)) => {
            let out = st.con_out;
            efi::print(out, "efiboot: ");
            efi::print(out, msg);
            if !detail.is_empty() {
                efi::print_u16(out, detail);
            }
            efi::print(out, "\r\n");
            // Leave the line on the screen a moment before systemd-boot's menu returns.
            ((*st.boot_services).stall)(3_000_000);
            status
        }
    }
}

type Failure = (Status, &'static str, &'static [u16]);

fn fail<T>(status: Status, msg: &'static str) -> Result<T, Failure> {
    Err((status, msg, &[]))
}

/// Splits the load options (UCS-2) into the kernel path and the command line, and finds
/// `initrd=` in the latter. Paths are written with `/`, as in systemd-boot's entries.
struct Options<'a> {
    kernel: &'a [u16],
    cmdline: &'a [u16],
    initrd: Option<&'a [u16]>,
}

fn parse_options(opts: &[u16]) -> Option<Options<'_>> {
    let end = opts.iter().position(|&c| c == 0).unwrap_or(opts.len());
    let opts = &opts[..end];
    let is_space = |c: &u16| *c == u16::from(b' ') || *c == u16::from(b'\t');
    let start = opts.iter().position(|c| !is_space(c))?;
    let opts = &opts[start..];
    let kend = opts.iter().position(is_space).unwrap_or(opts.len());
    let kernel = &opts[..kend];
    let rest = &opts[kend..];
    let cstart = rest.iter().position(|c| !is_space(c)).unwrap_or(rest.len());
    let cmdline = &rest[cstart..];
    let prefix: [u16; 7] = [105, 110, 105, 116, 114, 100, 61]; // "initrd="
    let initrd = cmdline
        .split(is_space)
        .find(|w| w.starts_with(&prefix))
        .map(|w| &w[prefix.len()..]);
    Some(Options {
        kernel,
        cmdline,
        initrd,
    })
}

/// Loads, leaves the firmware and starts the kernel; returns only on an error, while the
/// firmware is still there to show it.
unsafe fn run(image: efi::Handle, st: &SystemTable) -> Result<core::convert::Infallible, Failure> {
    let bs = &*st.boot_services;
    let no_memory = |what: &'static str| (efi::OUT_OF_RESOURCES, what, &[][..]);
    let loaded = efi::loaded_image(bs, image).ok_or((efi::LOAD_ERROR, "no LoadedImage protocol", &[][..]))?;
    let opts = core::slice::from_raw_parts(loaded.load_options as *const u16, loaded.load_options_size as usize / 2);
    let Some(o) = parse_options(opts) else {
        return fail(
            efi::INVALID_PARAMETER,
            "no options: start me with \"PATH-OF-BZIMAGE initrd=PATH-OF-INITRD KERNEL-COMMAND-LINE\"",
        );
    };
    // The load options outlive this loader's use of them.
    let named = |path: &[u16]| core::mem::transmute::<&[u16], &'static [u16]>(path);
    let root = efi::open_volume(bs, loaded.device_handle).ok_or((
        efi::NOT_FOUND,
        "cannot open the file system this loader was loaded from",
        &[][..],
    ))?;

    // The kernel's setup header first: it says how much room the kernel needs.
    let (kfile, kernel_len) = efi::open_file(root, o.kernel).map_err(|(s, m)| (s, m, named(o.kernel)))?;
    let mut k = [0u8; 0x1000];
    if kernel_len < k.len() as u64 {
        return fail(efi::LOAD_ERROR, "the kernel is not a bzImage (too short)");
    }
    efi::read(kfile, k.as_mut_ptr(), k.len() as u64).map_err(|(s, m)| (s, m, named(o.kernel)))?;
    if &k[0x202..0x206] != b"HdrS" {
        return fail(efi::LOAD_ERROR, "the kernel is not a bzImage (no HdrS header)");
    }
    let version = u16::from_le_bytes([k[0x206], k[0x207]]);
    let xloadflags = u16::from_le_bytes([k[0x236], k[0x237]]);
    if version < 0x20c || xloadflags & 1 == 0 || k[0x234] == 0 {
        return fail(
            efi::UNSUPPORTED,
            "the kernel lacks the 64-bit entry point or is not relocatable (boot protocol 2.12)",
        );
    }
    let setup_sects = match k[0x1f1] {
        0 => 4,
        n => u64::from(n),
    };
    let pm_offset = (setup_sects + 1) * 512;
    if kernel_len <= pm_offset {
        return fail(efi::LOAD_ERROR, "the kernel is not a bzImage (shorter than its setup)");
    }
    let init_size = u64::from(u32::from_le_bytes([k[0x260], k[0x261], k[0x262], k[0x263]]));
    let align = u64::from(u32::from_le_bytes([k[0x230], k[0x231], k[0x232], k[0x233]])).max(2 * MIB);
    let initrd_max = u64::from(u32::from_le_bytes([k[0x22c], k[0x22d], k[0x22e], k[0x22f]]));

    // The memory map buffer: room for the map and a few more entries than it has now.
    let (mut size, mut key, mut desc_size, mut desc_version) = (0usize, 0usize, 0usize, 0u32);
    let _ = (bs.get_memory_map)(
        &mut size,
        core::ptr::null_mut(),
        &mut key,
        &mut desc_size,
        &mut desc_version,
    );
    let cap = size + 32 * desc_size.max(48);
    let map = efi::alloc_pages(bs, cap.div_ceil(4096), 0xffff_ffff).ok_or(no_memory("no memory for the memory map"))?;
    let h = &mut *addr_of_mut!(HANDOFF);
    h.init_size = init_size.div_ceil(align) * align;
    h.align = align;
    h.map = map;
    let get_map = |h: &mut Handoff, key: &mut usize| -> Status {
        let (mut size, mut desc_size, mut desc_version) = (cap, 0usize, 0u32);
        let s = (bs.get_memory_map)(&mut size, map, key, &mut desc_size, &mut desc_version);
        h.map_size = size;
        h.desc_size = desc_size;
        h.desc_version = desc_version;
        s
    };

    // Where the kernel goes: memory that is free, or boot-time memory of the firmware,
    // now; its free parts are ours from here on (loader data), so that nothing else
    // lands there, and the kernel file is read into the largest.
    let s = get_map(h, &mut key);
    if s != efi::SUCCESS {
        return fail(s, "GetMemoryMap failed");
    }
    let Some(dest) = find_destination(h) else {
        return fail(
            efi::OUT_OF_RESOURCES,
            "not enough RAM: no block of the kernel's init_size at or above 16 MiB is free once the firmware is gone",
        );
    };
    h.dest = dest;
    let mut pieces = [(0u64, 0u64); MAX_PIECES];
    let mut n = 0;
    for d in descriptors(h) {
        let (s, e) = (d.start.max(dest), (d.start + d.pages * 4096).min(dest + h.init_size));
        if d.kind == efi::CONVENTIONAL_MEMORY && s < e && n < MAX_PIECES {
            pieces[n] = (s, e);
            n += 1;
        }
    }
    for &(s, e) in &pieces[..n] {
        if efi::alloc_at(bs, s, ((e - s) / 4096) as usize) && h.reserved_len < MAX_PIECES {
            h.reserved[h.reserved_len] = (s, e);
            h.reserved_len += 1;
        }
    }
    let kernel_pages = (kernel_len as usize).div_ceil(4096);
    let inside = h.reserved[..h.reserved_len]
        .iter()
        .find(|(s, e)| e - s >= kernel_pages as u64 * 4096);
    let kernel = match inside {
        Some(&(s, _)) => s as *mut u8,
        None => {
            efi::alloc_pages(bs, kernel_pages, MAPPED_MAX).ok_or(no_memory("not enough memory to load the kernel"))?
        }
    };
    efi::read(kfile, kernel, kernel_len).map_err(|(s, m)| (s, m, named(o.kernel)))?;
    efi::close(kfile);

    // The initrd: read into the block too when there is room besides the kernel (it is
    // moved out once the firmware's boot-time memory is free), else below the kernel's
    // limit for it.
    let (initrd, initrd_len) = match o.initrd {
        Some(path) => {
            let (f, len) = efi::open_file(root, path).map_err(|(s, m)| (s, m, named(path)))?;
            let pages = (len as usize).div_ceil(4096).max(1) as u64;
            let kernel_end = kernel as u64 + kernel_pages as u64 * 4096;
            let room = h.reserved[..h.reserved_len].iter().find_map(|&(s, e)| {
                let s = if (s..e).contains(&(kernel as u64)) {
                    kernel_end
                } else {
                    s
                };
                (e.saturating_sub(s) >= pages * 4096).then_some(s)
            });
            let buf = match room {
                Some(at) => {
                    h.initrd_moves = true;
                    at as *mut u8
                }
                None => efi::alloc_pages(bs, pages as usize, initrd_max).ok_or((
                    efi::OUT_OF_RESOURCES,
                    "not enough memory to load ",
                    named(path),
                ))?,
            };
            efi::read(f, buf, len).map_err(|(s, m)| (s, m, named(path)))?;
            efi::close(f);
            (buf, len)
        }
        None => (core::ptr::null_mut(), 0),
    };
    h.initrd = initrd;
    h.initrd_len = initrd_len;
    h.initrd_max = initrd_max;

    // boot_params (the zero page) and the command line, below 4 GiB.
    let bp = efi::alloc_pages(bs, 1, 0xffff_ffff).ok_or(no_memory("no memory for boot_params"))?;
    core::ptr::write_bytes(bp, 0, 4096);
    let hdr_end = (0x202 + usize::from(k[0x201])).min(0x290);
    core::ptr::copy_nonoverlapping(k.as_ptr().add(0x1f1), bp.add(0x1f1), hdr_end - 0x1f1);
    let cmd_pages = (o.cmdline.len() + 1).div_ceil(4096);
    let cmd = efi::alloc_pages(bs, cmd_pages, 0xffff_ffff).ok_or(no_memory("no memory for the command line"))?;
    for (i, &c) in o.cmdline.iter().enumerate() {
        *cmd.add(i) = if c < 0x80 { c as u8 } else { b'?' };
    }
    *cmd.add(o.cmdline.len()) = 0;
    *bp.add(0x210) = 0xff; // type_of_loader: undefined
    *bp.add(0x211) |= 0x01; // loadflags: LOADED_HIGH
    put32(bp, 0x228, cmd as u64 as u32); // cmd_line_ptr
    put32(bp, 0x0c8, (cmd as u64 >> 32) as u32); // ext_cmd_line_ptr
    put32(bp, 0x218, initrd as u64 as u32); // ramdisk_image
    put32(bp, 0x21c, initrd_len as u32); // ramdisk_size
    put32(bp, 0x0c0, (initrd as u64 >> 32) as u32); // ext_ramdisk_image
    put32(bp, 0x0c4, (initrd_len >> 32) as u32); // ext_ramdisk_size

    // Our stack and identity page tables (the firmware's are boot-time memory, which
    // the kernel may be moved over).
    let stack = efi::alloc_pages(bs, STACK_PAGES, MAPPED_MAX).ok_or(no_memory("no memory for the stack"))?;
    let pt = efi::alloc_pages(bs, PAGE_TABLE_PAGES, 0xffff_ffff).ok_or(no_memory("no memory for page tables"))?;
    build_page_tables(pt as *mut u64);

    h.system_table = st as *const SystemTable as u64;
    h.runtime = st.runtime_services;
    h.boot_params = bp;
    h.kernel = kernel.add(pm_offset as usize);
    h.kernel_len = kernel_len - pm_offset;
    h.page_tables = pt as u64;

    // The final map, then leave the firmware (again with a new map while the key is
    // stale). The block was checked against the final map before: after
    // ExitBootServices there is no console to say so.
    let mut tries = 0;
    loop {
        let s = get_map(h, &mut key);
        if s != efi::SUCCESS {
            return fail(s, "GetMemoryMap failed");
        }
        if tries == 0 && h.initrd_moves && initrd_home(h).is_none() {
            return fail(
                efi::OUT_OF_RESOURCES,
                "not enough RAM: no room for the initrd outside the kernel's block once the firmware is gone",
            );
        }
        if tries == 0 && !block_is_ours(h) {
            return fail(
                efi::OUT_OF_RESOURCES,
                "the block chosen for the kernel was taken while loading",
            );
        }
        let s = (bs.exit_boot_services)(image, key);
        if s == efi::SUCCESS {
            break;
        }
        tries += 1;
        if tries > 4 {
            return fail(s, "ExitBootServices failed");
        }
    }

    // No firmware from here on, except the runtime services.
    let top = stack as u64 + (STACK_PAGES as u64) * 4096;
    asm!(
        "cli",
        "mov rsp, {top}",
        "xor ebp, ebp",
        "call {finish}",
        top = in(reg) top,
        finish = sym finish,
        options(noreturn)
    );
}

/// Identity map of the first MAPPED_GIB GiB, writable, with 2 MiB pages: a PML4, a
/// PDPT, one directory per GiB.
unsafe fn build_page_tables(pt: *mut u64) {
    core::ptr::write_bytes(pt, 0, PAGE_TABLE_PAGES * 512);
    let base = pt as u64;
    *pt = (base + 4096) | 0x3;
    for i in 0..MAPPED_GIB {
        *pt.add(512 + i as usize) = (base + (2 + i) * 4096) | 0x3;
        for j in 0..512u64 {
            *pt.add((1024 + i * 512 + j) as usize) = ((i * 512 + j) << 21) | 0x83;
        }
    }
}

/// Whether [start, end) is memory the kernel may be placed over once the firmware
/// is gone: conventional or boot-services memory in the map, or (`ours`) the loader
/// data we took inside the block.
fn free_after_exit(h: &Handoff, start: u64, end: u64, ours: bool) -> bool {
    let mut covered = start;
    // The map is sorted by address (UEFI does not promise it: check coverage by
    // repeated passes, few descriptors each).
    loop {
        let mut advanced = false;
        for d in descriptors(h) {
            let (ds, de) = (d.start, d.start + d.pages * 4096);
            if ds <= covered && covered < de {
                let taken = |d: &Desc| {
                    h.reserved[..h.reserved_len]
                        .iter()
                        .any(|&(s, e)| s <= d.start && d.start + d.pages * 4096 <= e)
                };
                let free = matches!(
                    d.kind,
                    efi::CONVENTIONAL_MEMORY | efi::BOOT_SERVICES_CODE | efi::BOOT_SERVICES_DATA
                ) || (ours && d.kind == efi::LOADER_DATA && taken(&d));
                if !free {
                    return false;
                }
                covered = de;
                advanced = true;
                if covered >= end {
                    return true;
                }
            }
        }
        if !advanced {
            return false;
        }
    }
}

struct Desc {
    kind: u32,
    start: u64,
    pages: u64,
}

fn descriptors(h: &Handoff) -> impl Iterator<Item = Desc> + '_ {
    (0..h.map_size / h.desc_size.max(1)).map(move |i| {
        // SAFETY: the map holds map_size bytes of desc_size-byte descriptors.
        unsafe {
            let p = h.map.add(i * h.desc_size);
            Desc {
                kind: core::ptr::read_unaligned(p as *const u32),
                start: core::ptr::read_unaligned(p.add(8) as *const u64),
                pages: core::ptr::read_unaligned(p.add(24) as *const u64),
            }
        }
    })
}

/// The lowest aligned address at or above 16 MiB whose init_size block is free after
/// ExitBootServices. Our own allocations are loader data, so they are never inside.
fn find_destination(h: &Handoff) -> Option<u64> {
    let size = h.init_size;
    let mut best: Option<u64> = None;
    for d in descriptors(h) {
        // Candidate starts: the aligned address at or after each descriptor's start.
        let cand = (d.start.div_ceil(h.align) * h.align).max(MIN_KERNEL_ADDR);
        if best.is_some_and(|b| b <= cand) || cand.checked_add(size)? > 1 << 32 {
            continue;
        }
        if free_after_exit(h, cand, cand + size, false) {
            best = Some(cand);
        }
    }
    best
}

/// Where the initrd goes once the firmware is gone: the highest page-aligned range below
/// the kernel's limit for it (and 4 GiB) of free or boot-services memory, outside the
/// kernel's block.
fn initrd_home(h: &Handoff) -> Option<u64> {
    let len = h.initrd_len.div_ceil(4096).max(1) * 4096;
    let limit = h.initrd_max.saturating_add(1).min(1 << 32);
    let (block, block_end) = (h.dest, h.dest + h.init_size);
    let ends = descriptors(h).map(|d| d.start + d.pages * 4096).chain([block, limit]);
    ends.filter_map(|end| {
        let end = end.min(limit);
        let start = end.checked_sub(len)? & !4095;
        let clear = start + len <= block || start >= block_end;
        (start >= MIB && clear && free_after_exit(h, start, start + len, false)).then_some(start)
    })
    .max()
}

/// Whether the block at `dest` still holds only memory we may overwrite.
fn block_is_ours(h: &Handoff) -> bool {
    free_after_exit(h, h.dest, h.dest + h.init_size, true)
}

/// E820 types from EFI memory types, as the kernel's EFI stub makes them.
fn e820_type(kind: u32) -> Option<u32> {
    Some(match kind {
        efi::LOADER_CODE
        | efi::LOADER_DATA
        | efi::BOOT_SERVICES_CODE
        | efi::BOOT_SERVICES_DATA
        | efi::CONVENTIONAL_MEMORY => 1,
        efi::ACPI_RECLAIM_MEMORY => 3,
        efi::ACPI_MEMORY_NVS => 4,
        efi::UNUSABLE_MEMORY => 5,
        efi::PERSISTENT_MEMORY => 7,
        efi::RESERVED_MEMORY_TYPE
        | efi::RUNTIME_SERVICES_CODE
        | efi::RUNTIME_SERVICES_DATA
        | efi::MEMORY_MAPPED_IO
        | efi::MEMORY_MAPPED_IO_PORT_SPACE
        | efi::PAL_CODE => 2,
        _ => return None,
    })
}

/// After ExitBootServices, on our own stack: fill efi_info and the e820 table from the
/// final memory map, pick the destination, move the kernel there and jump.
extern "C" fn finish() -> ! {
    // SAFETY: the firmware is gone; HANDOFF was filled before and nothing else runs.
    unsafe {
        let h = &*addr_of!(HANDOFF);
        // Our page tables first: every write below goes to memory the firmware may have
        // mapped read-only.
        asm!("mov cr3, {pt}", pt = in(reg) h.page_tables, options(nostack, preserves_flags));
        let bp = h.boot_params;
        if !block_is_ours(h) {
            serial_line(b"efiboot: the kernel's block is not free in the final memory map; resetting");
            ((*h.runtime).reset_system)(efi::RESET_COLD, efi::OUT_OF_RESOURCES, 0, core::ptr::null());
        }
        // The initrd out of the block, as high as it may go (before the kernel moves).
        if h.initrd_moves {
            let Some(to) = initrd_home(h) else {
                serial_line(b"efiboot: no room for the initrd in the final memory map; resetting");
                ((*h.runtime).reset_system)(efi::RESET_COLD, efi::OUT_OF_RESOURCES, 0, core::ptr::null());
            };
            core::ptr::copy(h.initrd, to as *mut u8, h.initrd_len as usize);
            put32(bp, 0x218, to as u32); // ramdisk_image
            put32(bp, 0x0c0, (to >> 32) as u32); // ext_ramdisk_image
        }
        // Boot-services memory is the kernel's once the firmware is gone (UEFI 2.10,
        // 7.4 ExitBootServices): loader data in the map the kernel gets. Left as
        // boot-services memory, the kernel would keep it until it has set up the runtime
        // services (a workaround for firmware that uses it later, which OVMF does not),
        // and for good where its own image lies over it: memory a small VM lacks while
        // it unpacks its initramfs.
        for i in 0..h.map_size / h.desc_size.max(1) {
            let p = h.map.add(i * h.desc_size) as *mut u32;
            if matches!(
                core::ptr::read_unaligned(p),
                efi::BOOT_SERVICES_CODE | efi::BOOT_SERVICES_DATA
            ) {
                core::ptr::write_unaligned(p, efi::LOADER_DATA);
            }
        }
        put32(bp, 0x1c0, u32::from_le_bytes(*b"EL64"));
        put32(bp, 0x1c4, h.system_table as u32);
        put32(bp, 0x1c8, h.desc_size as u32);
        put32(bp, 0x1cc, h.desc_version);
        put32(bp, 0x1d0, h.map as u64 as u32);
        put32(bp, 0x1d4, h.map_size as u32);
        put32(bp, 0x1d8, (h.system_table >> 32) as u32);
        put32(bp, 0x1dc, (h.map as u64 >> 32) as u32);

        let mut n = 0usize;
        let e820 = bp.add(0x2d0);
        let mut last: Option<(u64, u64, u32)> = None;
        let mut push = |e: (u64, u64, u32)| {
            if n < MAX_E820 {
                let p = e820.add(20 * n);
                core::ptr::write_unaligned(p as *mut u64, e.0);
                core::ptr::write_unaligned(p.add(8) as *mut u64, e.1);
                core::ptr::write_unaligned(p.add(16) as *mut u32, e.2);
                n += 1;
            }
        };
        // The map sorted by address: selection by the next start (few dozen entries).
        let mut at = 0u64;
        loop {
            let next = descriptors(h).filter(|d| d.start >= at).min_by_key(|d| d.start);
            let Some(d) = next else { break };
            at = d.start + 1;
            let Some(t) = e820_type(d.kind) else { continue };
            let (s, len) = (d.start, d.pages * 4096);
            match &mut last {
                Some((ls, ll, lt)) if *lt == t && *ls + *ll == s => *ll += len,
                _ => {
                    if let Some(e) = last.take() {
                        push(e);
                    }
                    last = Some((s, len, t));
                }
            }
        }
        if let Some(e) = last {
            push(e);
        }
        *bp.add(0x1e8) = n as u8;

        let dest = h.dest;
        put32(bp, 0x214, dest as u32); // code32_start
        core::ptr::copy(h.kernel, dest as *mut u8, h.kernel_len as usize);
        asm!(
            "sub rsp, 16",
            "mov word ptr [rsp], {limit}",
            "mov [rsp + 2], rdi",
            "lgdt [rsp]",
            "mov eax, 0x18",
            "mov ds, ax",
            "mov es, ax",
            "mov ss, ax",
            "mov fs, ax",
            "mov gs, ax",
            "push 0x10",
            "lea rax, [rip + 2f]",
            "push rax",
            "retfq",
            "2:",
            "jmp rcx",
            limit = const 31,
            in("rdi") addr_of!(GDT) as u64,
            in("rcx") dest + 0x200,
            in("rsi") bp,
            options(noreturn)
        );
    }
}

/// Writes the 32-bit field at `off` of the zero page.
///
/// # Safety
/// `bp` points at the 4 KiB zero page.
unsafe fn put32(bp: *mut u8, off: usize, v: u32) {
    core::ptr::write_unaligned(bp.add(off) as *mut u32, v);
}

/// A line on COM1 (0x3f8), for the errors after ExitBootServices.
fn serial_line(msg: &[u8]) {
    for &b in msg.iter().chain(b"\r\n") {
        // SAFETY: port I/O to the first serial port; harmless if there is none.
        unsafe {
            for _ in 0..100_000 {
                let lsr: u8;
                asm!("in al, dx", out("al") lsr, in("dx") 0x3fdu16, options(nomem, nostack));
                if lsr & 0x20 != 0 {
                    break;
                }
            }
            asm!("out dx, al", in("al") b, in("dx") 0x3f8u16, options(nomem, nostack));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn utf16(s: &str) -> Vec<u16> {
        s.encode_utf16().chain([0]).collect()
    }

    #[test]
    fn options_name_the_kernel_the_initrd_and_the_command_line() {
        let opts = utf16("  /a/vmlinuz initrd=/a/initrd.img console=ttyS0 router.slot=a");
        let o = parse_options(&opts).expect("options");
        assert_eq!(String::from_utf16_lossy(o.kernel), "/a/vmlinuz");
        assert_eq!(String::from_utf16_lossy(o.initrd.expect("initrd")), "/a/initrd.img");
        assert_eq!(
            String::from_utf16_lossy(o.cmdline),
            "initrd=/a/initrd.img console=ttyS0 router.slot=a"
        );
        assert!(parse_options(&utf16("   ")).is_none());
        assert!(parse_options(&utf16("/a/vmlinuz"))
            .expect("kernel alone")
            .initrd
            .is_none());
    }

    /// A memory map of (type, start MiB, size MiB) descriptors, 48 bytes each as OVMF's.
    fn map(descs: &[(u32, u64, u64)]) -> Vec<u8> {
        let mut m = vec![0u8; 48 * descs.len()];
        for (i, &(kind, start, size)) in descs.iter().enumerate() {
            let d = &mut m[48 * i..];
            d[0..4].copy_from_slice(&kind.to_le_bytes());
            d[8..16].copy_from_slice(&(start * MIB).to_le_bytes());
            d[24..32].copy_from_slice(&(size * MIB / 4096).to_le_bytes());
        }
        m
    }

    fn handoff(m: &mut [u8]) -> Handoff {
        Handoff {
            system_table: 0,
            runtime: core::ptr::null(),
            boot_params: core::ptr::null_mut(),
            kernel: core::ptr::null(),
            kernel_len: 0,
            init_size: 64 * MIB,
            align: 2 * MIB,
            map: m.as_mut_ptr(),
            map_size: m.len(),
            desc_size: 48,
            desc_version: 1,
            page_tables: 0,
            initrd: core::ptr::null(),
            initrd_len: 8 * MIB + 1,
            initrd_max: 0x7fff_ffff,
            initrd_moves: true,
            dest: 0,
            reserved: [(0, 0); MAX_PIECES],
            reserved_len: 0,
        }
    }

    use efi::{
        ACPI_MEMORY_NVS as NVS, BOOT_SERVICES_DATA as BS, CONVENTIONAL_MEMORY as FREE, LOADER_DATA as LD,
        RUNTIME_SERVICES_DATA as RT,
    };

    #[test]
    fn the_block_may_hold_boot_services_memory_but_nothing_the_firmware_keeps() {
        // OVMF with 128 MiB, simplified: its DXE volume (boot-services data) at 9-21 MiB.
        let mut m = map(&[
            (FREE, 1, 7),
            (NVS, 8, 1),
            (BS, 9, 12),
            (FREE, 21, 59),
            (LD, 80, 2),
            (RT, 120, 8),
        ]);
        let h = handoff(&mut m);
        assert_eq!(find_destination(&h), Some(16 * MIB));
        // Runtime data inside: the block goes above it.
        let mut m = map(&[(FREE, 1, 20), (RT, 21, 1), (FREE, 22, 100)]);
        let h = handoff(&mut m);
        assert_eq!(find_destination(&h), Some(22 * MIB));
        // Loader data (systemd-boot's, ours) is not the kernel's to overwrite.
        let mut m = map(&[(FREE, 1, 40), (LD, 41, 1), (FREE, 42, 60)]);
        assert_eq!(find_destination(&handoff(&mut m)), None);
    }

    #[test]
    fn the_initrd_goes_high_outside_the_block_and_our_data() {
        let mut m = map(&[
            (FREE, 1, 7),
            (BS, 16, 64),
            (BS, 80, 20),
            (LD, 100, 1),
            (BS, 101, 5),
            (RT, 106, 22),
        ]);
        let mut h = handoff(&mut m);
        h.dest = 16 * MIB;
        // 8 MiB + 1 byte: 8 MiB + a page; [101, 106) is too small, [80, 100) takes it.
        assert_eq!(initrd_home(&h), Some(100 * MIB - 8 * MIB - 4096));
        h.initrd_len = 30 * MIB;
        assert_eq!(initrd_home(&h), None);
        // Our loader data inside the block counts as free only for the block itself.
        h.reserved[0] = (16 * MIB, 80 * MIB);
        h.reserved_len = 1;
        let mut m2 = map(&[(LD, 16, 64), (FREE, 80, 40)]);
        h.map = m2.as_mut_ptr();
        h.map_size = m2.len();
        assert!(block_is_ours(&h));
        h.reserved_len = 0;
        assert!(!block_is_ours(&h));
    }

    #[test]
    fn e820_types_follow_the_efi_stub() {
        assert_eq!(e820_type(FREE), Some(1));
        assert_eq!(e820_type(BS), Some(1));
        assert_eq!(e820_type(LD), Some(1));
        assert_eq!(e820_type(NVS), Some(4));
        assert_eq!(e820_type(RT), Some(2));
        assert_eq!(e820_type(efi::ACPI_RECLAIM_MEMORY), Some(3));
        assert_eq!(e820_type(99), None);
    }
}
