//! The few UEFI types and calls the loader uses (UEFI 2.10 specification).

use core::ffi::c_void;

pub type Handle = *mut c_void;
pub type Status = usize;

const ERROR: usize = 1 << 63;
pub const SUCCESS: Status = 0;
pub const LOAD_ERROR: Status = ERROR | 1;
pub const INVALID_PARAMETER: Status = ERROR | 2;
pub const UNSUPPORTED: Status = ERROR | 3;
pub const BUFFER_TOO_SMALL: Status = ERROR | 5;
pub const OUT_OF_RESOURCES: Status = ERROR | 9;
pub const NOT_FOUND: Status = ERROR | 14;

// Memory types.
pub const RESERVED_MEMORY_TYPE: u32 = 0;
pub const LOADER_CODE: u32 = 1;
pub const LOADER_DATA: u32 = 2;
pub const BOOT_SERVICES_CODE: u32 = 3;
pub const BOOT_SERVICES_DATA: u32 = 4;
pub const RUNTIME_SERVICES_CODE: u32 = 5;
pub const RUNTIME_SERVICES_DATA: u32 = 6;
pub const CONVENTIONAL_MEMORY: u32 = 7;
pub const UNUSABLE_MEMORY: u32 = 8;
pub const ACPI_RECLAIM_MEMORY: u32 = 9;
pub const ACPI_MEMORY_NVS: u32 = 10;
pub const MEMORY_MAPPED_IO: u32 = 11;
pub const MEMORY_MAPPED_IO_PORT_SPACE: u32 = 12;
pub const PAL_CODE: u32 = 13;
pub const PERSISTENT_MEMORY: u32 = 14;

const ALLOCATE_ANY_PAGES: u32 = 0;
const ALLOCATE_MAX_ADDRESS: u32 = 1;
const ALLOCATE_ADDRESS: u32 = 2;
pub const RESET_COLD: u32 = 0;

#[repr(C)]
pub struct Guid(u32, u16, u16, [u8; 8]);

const LOADED_IMAGE: Guid = Guid(
    0x5b1b31a1,
    0x9562,
    0x11d2,
    [0x8e, 0x3f, 0x00, 0xa0, 0xc9, 0x69, 0x72, 0x3b],
);
const SIMPLE_FILE_SYSTEM: Guid = Guid(
    0x964e5b22,
    0x6459,
    0x11d2,
    [0x8e, 0x39, 0x00, 0xa0, 0xc9, 0x69, 0x72, 0x3b],
);
const FILE_INFO: Guid = Guid(
    0x09576e92,
    0x6d3f,
    0x11d2,
    [0x8e, 0x39, 0x00, 0xa0, 0xc9, 0x69, 0x72, 0x3b],
);

#[repr(C)]
pub struct TableHeader {
    signature: u64,
    revision: u32,
    header_size: u32,
    crc32: u32,
    reserved: u32,
}

#[repr(C)]
pub struct SystemTable {
    hdr: TableHeader,
    firmware_vendor: *const u16,
    firmware_revision: u32,
    console_in_handle: Handle,
    con_in: *mut c_void,
    console_out_handle: Handle,
    pub con_out: *mut TextOutput,
    standard_error_handle: Handle,
    std_err: *mut TextOutput,
    pub runtime_services: *const RuntimeServices,
    pub boot_services: *const BootServices,
}

#[repr(C)]
pub struct TextOutput {
    reset: usize,
    output_string: unsafe extern "efiapi" fn(*mut TextOutput, *const u16) -> Status,
}

#[repr(C)]
pub struct RuntimeServices {
    hdr: TableHeader,
    _time_and_variables: [usize; 10],
    pub reset_system: unsafe extern "efiapi" fn(u32, Status, usize, *const c_void) -> !,
}

#[repr(C)]
pub struct BootServices {
    hdr: TableHeader,
    raise_tpl: usize,
    restore_tpl: usize,
    allocate_pages: unsafe extern "efiapi" fn(u32, u32, usize, *mut u64) -> Status,
    free_pages: usize,
    pub get_memory_map: unsafe extern "efiapi" fn(*mut usize, *mut u8, *mut usize, *mut usize, *mut u32) -> Status,
    allocate_pool: usize,
    free_pool: usize,
    _events: [usize; 6],
    _protocol_interfaces: [usize; 3],
    handle_protocol: unsafe extern "efiapi" fn(Handle, *const Guid, *mut *mut c_void) -> Status,
    _reserved_to_load: [usize; 5],
    _images: [usize; 4],
    pub exit_boot_services: unsafe extern "efiapi" fn(Handle, usize) -> Status,
    get_next_monotonic_count: usize,
    pub stall: unsafe extern "efiapi" fn(usize) -> Status,
}

#[repr(C)]
pub struct LoadedImage {
    revision: u32,
    parent_handle: Handle,
    system_table: *const SystemTable,
    pub device_handle: Handle,
    file_path: *const c_void,
    reserved: *const c_void,
    pub load_options_size: u32,
    pub load_options: *const c_void,
}

#[repr(C)]
struct SimpleFileSystem {
    revision: u64,
    open_volume: unsafe extern "efiapi" fn(*mut SimpleFileSystem, *mut *mut File) -> Status,
}

#[repr(C)]
pub struct File {
    revision: u64,
    open: unsafe extern "efiapi" fn(*mut File, *mut *mut File, *const u16, u64, u64) -> Status,
    close: unsafe extern "efiapi" fn(*mut File) -> Status,
    delete: usize,
    read: unsafe extern "efiapi" fn(*mut File, *mut usize, *mut u8) -> Status,
    write: usize,
    get_position: usize,
    set_position: unsafe extern "efiapi" fn(*mut File, u64) -> Status,
    get_info: unsafe extern "efiapi" fn(*mut File, *const Guid, *mut usize, *mut u8) -> Status,
}

/// # Safety
/// `out` is the firmware's console, before ExitBootServices.
pub unsafe fn print(out: *mut TextOutput, s: &str) {
    let mut buf = [0u16; 128];
    let mut n = 0;
    for c in s.encode_utf16() {
        buf[n] = c;
        n += 1;
        if n == buf.len() - 1 {
            buf[n] = 0;
            ((*out).output_string)(out, buf.as_ptr());
            n = 0;
        }
    }
    buf[n] = 0;
    ((*out).output_string)(out, buf.as_ptr());
}

/// # Safety
/// As [`print`].
pub unsafe fn print_u16(out: *mut TextOutput, s: &[u16]) {
    let mut buf = [0u16; 128];
    let n = s.len().min(buf.len() - 1);
    buf[..n].copy_from_slice(&s[..n]);
    ((*out).output_string)(out, buf.as_ptr());
}

/// # Safety
/// Boot services are available.
pub unsafe fn loaded_image<'a>(bs: &BootServices, image: Handle) -> Option<&'a LoadedImage> {
    let mut p = core::ptr::null_mut();
    let s = (bs.handle_protocol)(image, &LOADED_IMAGE, &mut p);
    (s == SUCCESS && !p.is_null()).then(|| &*(p as *const LoadedImage))
}

/// # Safety
/// Boot services are available.
pub unsafe fn open_volume(bs: &BootServices, device: Handle) -> Option<*mut File> {
    let mut p = core::ptr::null_mut();
    if (bs.handle_protocol)(device, &SIMPLE_FILE_SYSTEM, &mut p) != SUCCESS || p.is_null() {
        return None;
    }
    let fs = p as *mut SimpleFileSystem;
    let mut root = core::ptr::null_mut();
    (((*fs).open_volume)(fs, &mut root) == SUCCESS && !root.is_null()).then_some(root)
}

/// Pages of loader data below `max` (inclusive), anywhere when `max` is `u64::MAX`.
///
/// # Safety
/// Boot services are available.
pub unsafe fn alloc_pages(bs: &BootServices, pages: usize, max: u64) -> Option<*mut u8> {
    let mut addr = max;
    let how = if max == u64::MAX {
        ALLOCATE_ANY_PAGES
    } else {
        ALLOCATE_MAX_ADDRESS
    };
    ((bs.allocate_pages)(how, LOADER_DATA, pages, &mut addr) == SUCCESS).then_some(addr as *mut u8)
}

/// The pages at `addr` as loader data, when they are free.
///
/// # Safety
/// Boot services are available.
pub unsafe fn alloc_at(bs: &BootServices, addr: u64, pages: usize) -> bool {
    let mut a = addr;
    (bs.allocate_pages)(ALLOCATE_ADDRESS, LOADER_DATA, pages, &mut a) == SUCCESS
}

pub type FileError = (Status, &'static str);
const READ_CHUNK: u64 = 1 << 20;

/// Opens the file at `path` (`/` or `\\` separated, from the root of the volume):
/// the file and its size.
///
/// # Safety
/// Boot services are available; `root` is an open directory.
pub unsafe fn open_file(root: *mut File, path: &[u16]) -> Result<(*mut File, u64), FileError> {
    let mut name = [0u16; 256];
    if path.is_empty() || path.len() >= name.len() {
        return Err((INVALID_PARAMETER, "bad file name: "));
    }
    for (d, &c) in name.iter_mut().zip(path) {
        *d = if c == u16::from(b'/') { u16::from(b'\\') } else { c };
    }
    let mut f = core::ptr::null_mut();
    let s = ((*root).open)(root, &mut f, name.as_ptr(), 1, 0);
    if s != SUCCESS || f.is_null() {
        return Err((if s == SUCCESS { NOT_FOUND } else { s }, "cannot open "));
    }
    let mut info = [0u64; 128];
    let mut info_size = core::mem::size_of_val(&info);
    let s = ((*f).get_info)(f, &FILE_INFO, &mut info_size, info.as_mut_ptr() as *mut u8);
    if s != SUCCESS {
        ((*f).close)(f);
        return Err((
            if s == BUFFER_TOO_SMALL { LOAD_ERROR } else { s },
            "cannot get the size of ",
        ));
    }
    Ok((f, info[1]))
}

/// Reads `len` bytes from the start of `f` into `buf`.
///
/// # Safety
/// Boot services are available; `buf` has room for `len` bytes.
pub unsafe fn read(f: *mut File, buf: *mut u8, len: u64) -> Result<(), FileError> {
    let s = ((*f).set_position)(f, 0);
    if s != SUCCESS {
        return Err((s, "cannot read "));
    }
    let mut done = 0u64;
    while done < len {
        // In pieces: the firmware may need a bounce buffer of the size asked for.
        let mut n = (len - done).min(READ_CHUNK) as usize;
        let s = ((*f).read)(f, &mut n, buf.add(done as usize));
        if s != SUCCESS || n == 0 {
            return Err((if s == SUCCESS { LOAD_ERROR } else { s }, "cannot read "));
        }
        done += n as u64;
    }
    Ok(())
}

/// # Safety
/// `f` is open.
pub unsafe fn close(f: *mut File) {
    ((*f).close)(f);
}
