//! Start-up: the symbols the Microkit tool patches (`microkit_name`, `microkit_passive`,
//! `microkit_irqs`, `microkit_notifications`, `microkit_pps`, `microkit_ioports`), the entry
//! point `_start` (declared by [`crate::protection_domain!`]), the run function and the panic
//! handler, which prints the PD's name and message on a debug kernel and suspends the PD.

use super::kernel::{Sel4Kernel, Sel4Transport, debug_write};
use super::syscall;
use crate::abi::{LABELS, MessageInfo, PD_NAME_LENGTH, slot};
use crate::event_loop::{EventLoop, Grants};
use crate::handler::Handler;
use crate::patched::Patched;
use crate::pd_static::PdStatic;

#[unsafe(no_mangle)]
#[used]
static microkit_name: Patched<[u8; PD_NAME_LENGTH]> = Patched::new([0; PD_NAME_LENGTH]);
#[unsafe(no_mangle)]
#[used]
static microkit_passive: Patched<bool> = Patched::new(false);
#[unsafe(no_mangle)]
#[used]
static microkit_irqs: Patched<u64> = Patched::new(0);
#[unsafe(no_mangle)]
#[used]
static microkit_notifications: Patched<u64> = Patched::new(0);
#[unsafe(no_mangle)]
#[used]
static microkit_pps: Patched<u64> = Patched::new(0);
#[unsafe(no_mangle)]
#[used]
static microkit_ioports: Patched<u64> = Patched::new(0);

/// The channel grants the tool patched in.
pub fn grants() -> Grants {
    Grants {
        irqs: microkit_irqs.get(),
        notifications: microkit_notifications.get(),
        pps: microkit_pps.get(),
        passive: microkit_passive.get(),
    }
}

/// The PD's name as the Microkit tool patched it into `microkit_name` (NUL-padded), for what
/// must differ between PDs built from one ELF (a VMM's MAC address).
pub fn raw_name() -> [u8; PD_NAME_LENGTH] {
    microkit_name.get()
}

/// The PD's name from `microkit_name`, printable with `{}`.
pub struct Name;

impl core::fmt::Display for Name {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        let raw = microkit_name.get();
        let len = raw.iter().position(|&b| b == 0).unwrap_or(raw.len());
        match core::str::from_utf8(&raw[..len]) {
            Ok(s) => f.write_str(s),
            Err(_) => f.write_str("?"),
        }
    }
}

/// Builds the handler with `init` and runs the event loop forever. Called by `_start`.
pub fn run<H: Handler>(init: impl FnOnce(Sel4Kernel) -> H) -> ! {
    let mut handler = init(Sel4Kernel::new());
    EventLoop::new(Sel4Transport, grants()).run(&mut handler)
}

/// Takes the handler from `cell` (built as a constant in the image), finishes it with `setup`
/// and runs the event loop forever. Called by `_start` (the `static` form of
/// [`crate::protection_domain!`]): the stack holds only one event's frames.
pub fn run_static<H: Handler>(
    cell: &'static PdStatic<H>,
    setup: impl FnOnce(Sel4Kernel, &mut H),
) -> ! {
    let Some(handler) = cell.take() else {
        panic!("the PD's handler was taken twice");
    };
    setup(Sel4Kernel::new(), handler);
    EventLoop::new(Sel4Transport, grants()).run(handler)
}

#[panic_handler]
fn panic(info: &core::panic::PanicInfo<'_>) -> ! {
    use core::fmt::Write;
    struct Console;
    impl Write for Console {
        fn write_str(&mut self, s: &str) -> core::fmt::Result {
            debug_write(s.as_bytes());
            Ok(())
        }
    }
    let _ = writeln!(Console, "{}: PANIC: {}", Name, info);
    // Stop this PD cleanly: suspend its own thread. Nothing else in the system is affected.
    syscall::call(slot::TCB, MessageInfo::new(LABELS.tcb_suspend, 0));
    loop {
        syscall::wait(slot::INPUT);
    }
}

/// Declares the PD's entry point: `protection_domain!(|kernel| MyHandler::new(kernel));`, or,
/// for a handler kept in a static (no copy of it on the stack),
/// `protection_domain!(static HANDLER: MyHandler = MyHandler::EMPTY, |kernel, h| h.setup(kernel));`.
#[macro_export]
macro_rules! protection_domain {
    (static $name:ident : $ty:ty = $value:expr, $setup:expr $(,)?) => {
        static $name: $crate::PdStatic<$ty> = $crate::PdStatic::new($value);
        /// Entry point: the Microkit tool starts the PD here with SP at the top of its stack.
        #[unsafe(no_mangle)]
        pub extern "C" fn _start() -> ! {
            $crate::sel4::entry::run_static(&$name, $setup)
        }
    };
    ($init:expr) => {
        /// Entry point: the Microkit tool starts the PD here with SP at the top of its stack.
        #[unsafe(no_mangle)]
        pub extern "C" fn _start() -> ! {
            $crate::sel4::entry::run($init)
        }
    };
}
