//! The receive/transmit queue pair the console and network cards share (virtio 1.2 §5.1.2 and
//! §5.3.2: receiveq 0, transmitq 1): which of a device's two pumps an activation, a queue
//! notification or a backend event runs, and whether the driver then wants the used-buffer
//! notification. The devices own what moves through the queues ([`QueuePair`]).

use vmm_core::memory::GuestMemory;

use crate::mmio::{DeviceError, Notify};
use crate::queue::{Queue, QueueError};

/// Index of the receive queue (receiveq1 / receiveq, port 0).
pub const RECEIVEQ: u16 = 0;
/// Index of the transmit queue (transmitq1 / transmitq, port 0).
pub const TRANSMITQ: u16 = 1;

/// Backend events of a queue-pair device, which the VMM delivers through
/// [`crate::mmio::MmioTransport::device_event`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PairEvent {
    /// The backend has received data (bytes, frames) for the guest.
    RxReady,
    /// The backend has room to send again.
    TxReady,
}

/// A device with a receive and a transmit queue: each pump moves what it can and says whether
/// it returned any buffer to the used ring.
pub(crate) trait QueuePair {
    /// Moves backend data into the guest's receive buffers.
    fn pump_rx<M: GuestMemory>(
        &mut self,
        queues: &mut [Queue],
        mem: &mut M,
    ) -> Result<bool, DeviceError>;
    /// Moves the guest's transmit buffers to the backend.
    fn pump_tx<M: GuestMemory>(
        &mut self,
        queues: &mut [Queue],
        mem: &mut M,
    ) -> Result<bool, DeviceError>;
}

/// The error of queue `queue`.
pub(crate) fn queue_err(queue: u16) -> impl Fn(QueueError) -> DeviceError {
    move |error| DeviceError::Queue { queue, error }
}

/// Which pumps run: (receive, transmit).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Pumps(pub bool, pub bool);

impl Pumps {
    /// Both (activation).
    pub const BOTH: Pumps = Pumps(true, true);

    /// Those a notification of `queue` asks for (none for a queue the device does not have).
    pub fn of_queue(queue: u16) -> Pumps {
        Pumps(queue == RECEIVEQ, queue == TRANSMITQ)
    }

    /// Those a backend event asks for.
    pub fn of_event(event: PairEvent) -> Pumps {
        Pumps(event == PairEvent::RxReady, event == PairEvent::TxReady)
    }
}

/// Runs `pumps` of `dev` (receive first), then asks each queue that returned buffers whether
/// the driver wants to be notified.
pub(crate) fn run<D: QueuePair, M: GuestMemory>(
    dev: &mut D,
    pumps: Pumps,
    queues: &mut [Queue],
    mem: &mut M,
) -> Result<Notify, DeviceError> {
    let rx = pumps.0 && dev.pump_rx(queues, mem)?;
    let tx = pumps.1 && dev.pump_tx(queues, mem)?;
    let mut wanted = false;
    for (i, used) in [(RECEIVEQ, rx), (TRANSMITQ, tx)] {
        if let Some(q) = queues.get_mut(usize::from(i)).filter(|q| used && q.ready()) {
            wanted |= q.notification_wanted(&*mem).map_err(queue_err(i))?;
        }
    }
    Ok(Notify { used: wanted })
}
