//! Links the loader as a static position-independent ELF without start files or libc:
//! the image builder turns it into a PE32+ UEFI application (image/src/pe.rs).

fn main() {
    for arg in [
        "-nostartfiles",
        "-nostdlib",
        "-static-pie",
        "-Wl,--entry=efi_main",
        "-Wl,--no-dynamic-linker",
        "-Wl,-z,norelro",
        "-Wl,--build-id=none",
    ] {
        println!("cargo:rustc-link-arg-bins={arg}");
    }
    println!("cargo:rerun-if-changed=build.rs");
}
