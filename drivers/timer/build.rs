//! Generates this PD's constants and its client table from system.xml.
fn main() {
    sdf::codegen::build_script("timer_driver");
    sdf::timer::build_script("timer_driver");
}
