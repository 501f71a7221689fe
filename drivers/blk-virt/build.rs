//! Generates this PD's constants and its client table from system.xml.
fn main() {
    sdf::codegen::build_script("blk_virt");
    sdf::blk::build_script("blk_virt");
}
