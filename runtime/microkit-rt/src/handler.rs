//! The Handler API a protection domain implements, shaped after rust-sel4's `sel4-microkit`
//! (`notified`, `protected`, `fault`, `take_deferred_action`), so a later switch stays cheap.

use crate::abi::{MAX_CHANNELS, MAX_CHILDREN, MessageInfo, slot};

/// A channel id of this PD (0..62), as system.xml's `<end id=…>` or `<irq id=…>` gives it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Channel(u8);

impl Channel {
    /// Channel `index`; `const` so generated constants are checked at compile time.
    pub const fn new(index: u8) -> Self {
        assert!(index < MAX_CHANNELS, "channel id out of range");
        Self(index)
    }
    /// Channel `index` if it is a valid id.
    pub const fn try_new(index: u64) -> Option<Self> {
        if index < MAX_CHANNELS as u64 {
            Some(Self(index as u8))
        } else {
            None
        }
    }
    /// The id.
    pub const fn index(self) -> u8 {
        self.0
    }
    /// Slot of the notification capability to the peer.
    pub const fn notification_slot(self) -> u64 {
        slot::BASE_OUTPUT_NOTIFICATION + self.0 as u64
    }
    /// Slot of the endpoint capability to the peer (protected calls).
    pub const fn endpoint_slot(self) -> u64 {
        slot::BASE_ENDPOINT + self.0 as u64
    }
    /// Slot of the IRQ handler capability of an IRQ channel.
    pub const fn irq_slot(self) -> u64 {
        slot::BASE_IRQ + self.0 as u64
    }
}

/// A child of this PD: a child PD or a virtual machine's vCPU, by its id in system.xml.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Child(u8);

impl Child {
    /// Child `index`.
    pub const fn new(index: u8) -> Self {
        assert!(index < MAX_CHILDREN, "child id out of range");
        Self(index)
    }
    /// Child `index` if it is a valid id.
    pub const fn try_new(index: u64) -> Option<Self> {
        if index < MAX_CHILDREN as u64 {
            Some(Self(index as u8))
        } else {
            None
        }
    }
    /// The id.
    pub const fn index(self) -> u8 {
        self.0
    }
    /// Slot of a child PD's TCB.
    pub const fn tcb_slot(self) -> u64 {
        slot::BASE_TCB + self.0 as u64
    }
    /// Slot of a VM vCPU thread's TCB.
    pub const fn vm_tcb_slot(self) -> u64 {
        slot::BASE_VM_TCB + self.0 as u64
    }
    /// Slot of a vCPU object.
    pub const fn vcpu_slot(self) -> u64 {
        slot::BASE_VCPU + self.0 as u64
    }
}

/// The set of channels one notification badge carries.
#[derive(Clone, Copy, PartialEq, Eq, Default)]
pub struct ChannelSet(u64);

impl ChannelSet {
    /// From a notification badge (bits 62 and 63 are never channels and are dropped).
    pub const fn from_badge(badge: u64) -> Self {
        Self(badge & ((1 << MAX_CHANNELS) - 1))
    }
    /// The raw bit set.
    pub const fn bits(self) -> u64 {
        self.0
    }
    /// Whether `ch` is in the set.
    pub const fn contains(self, ch: Channel) -> bool {
        self.0 & (1 << ch.0) != 0
    }
    /// Whether the set is empty.
    pub const fn is_empty(self) -> bool {
        self.0 == 0
    }
    /// The channels, lowest id first.
    pub fn iter(self) -> impl Iterator<Item = Channel> {
        let mut bits = self.0;
        core::iter::from_fn(move || {
            if bits == 0 {
                return None;
            }
            let i = bits.trailing_zeros() as u8;
            bits &= bits - 1;
            Some(Channel(i))
        })
    }
}

impl core::fmt::Debug for ChannelSet {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_set().entries(self.iter().map(|c| c.0)).finish()
    }
}

/// A signal the event loop may send together with its next receive (one NBSendRecv instead of a
/// Send and a Recv): the deferred-signal optimisation of libmicrokit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeferredAction {
    /// Notify the peer of a channel.
    Notify(Channel),
    /// Acknowledge the IRQ of a channel.
    IrqAck(Channel),
}

/// The reply to a fault: `None` leaves the faulting thread blocked; `Some(info)` replies with
/// `info` (message registers set through the kernel) and resumes it.
pub type FaultReply = Option<MessageInfo>;

/// What a protection domain does with each event.
///
/// Message registers are read and written through the PD's [`crate::kernel::Kernel`], which the
/// handler owns, so host tests drive a handler against a simulated kernel.
pub trait Handler {
    /// Error a handler may return: the event loop logs it with the PD's name and goes on.
    type Error: core::fmt::Display;

    /// One or more channels were notified (or their IRQs fired).
    fn notified(&mut self, channels: ChannelSet) -> Result<(), Self::Error> {
        let _ = channels;
        Ok(())
    }

    /// A protected procedure call arrived on `channel`; the returned message is the reply.
    fn protected(
        &mut self,
        channel: Channel,
        msg_info: MessageInfo,
    ) -> Result<MessageInfo, Self::Error> {
        let _ = (channel, msg_info);
        Ok(MessageInfo::new(crate::abi::error::ILLEGAL_OPERATION, 0))
    }

    /// A child PD or vCPU faulted.
    fn fault(&mut self, child: Child, msg_info: MessageInfo) -> Result<FaultReply, Self::Error> {
        let _ = (child, msg_info);
        Ok(None)
    }

    /// A signal to send with the next receive, if any (asked once per event).
    fn take_deferred_action(&mut self) -> Option<DeferredAction> {
        None
    }

    /// Reports what the event loop could not hand back: an error this handler returned, or an
    /// event it could not deliver (`what` says which, `detail` the error or the value). Returns
    /// whether the PD's own output took the report (a PD whose messages go through the serial
    /// driver domain writes it there, prefixed with its name, so release kernels show it too);
    /// `false`, the default, leaves it to the kernel's debug console (debug kernels only).
    /// Not in `sel4-microkit`'s `Handler` (which has no such report): a provided method, so a
    /// later switch only drops the overrides.
    fn report(&mut self, what: &str, detail: &dyn core::fmt::Display) -> bool {
        let _ = (what, detail);
        false
    }
}
