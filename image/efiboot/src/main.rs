//! The UEFI entry point of the loader; the loader itself is the library (src/lib.rs).

#![no_std]
#![no_main]

#[panic_handler]
fn panic(_: &core::panic::PanicInfo) -> ! {
    efiboot::halt()
}

/// # Safety
/// Called by the firmware with a valid image handle and system table.
#[no_mangle]
pub unsafe extern "efiapi" fn efi_main(image: efiboot::efi::Handle, st: *const efiboot::efi::SystemTable) -> usize {
    efiboot::main(image, st)
}
