//! Generates this PD's constants and its client table from system.xml.
fn main() {
    sdf::codegen::build_script("net_virt");
    sdf::net::build_script("net_virt");
}
