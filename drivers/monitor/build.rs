//! Generates this PD's constants from system.xml.
fn main() {
    sdf::codegen::build_script("driver_monitor")
}
