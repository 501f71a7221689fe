//! The Microkit event loop: receive on the input endpoint, dispatch by badge (bit 62: fault of a
//! child, bit 63: protected call, otherwise notification bits) to the [`Handler`], reply, and
//! piggy-back at most one deferred signal on the next receive (NBSendRecv).
//!
//! The loop is generic over a [`Transport`] (the four receive-shaped syscalls), so the same code
//! runs on seL4 and, in host tests, against a scripted transport.

use crate::abi::{LABELS, MessageInfo, badge, error, slot};
use crate::handler::{Channel, ChannelSet, Child, DeferredAction, Handler};

/// The syscalls the loop is made of. Badges and message infos come back as the kernel gave them;
/// message registers stay in the IPC buffer (or its simulation).
pub trait Transport {
    /// `seL4_Recv` on the input endpoint with the PD's reply object.
    fn recv(&mut self) -> (u64, MessageInfo);
    /// `seL4_ReplyRecv`: reply with `reply`, then receive.
    fn reply_recv(&mut self, reply: MessageInfo) -> (u64, MessageInfo);
    /// `seL4_NBSendRecv`: send `msg` to `dest` without blocking, then receive.
    fn nb_send_recv(&mut self, dest: u64, msg: MessageInfo) -> (u64, MessageInfo);
    /// `seL4_Send` of `msg` to `dest` (a deferred signal that cannot ride on a ReplyRecv).
    fn send(&mut self, dest: u64, msg: MessageInfo);
    /// `seL4_IRQHandler_Ack` through a Call on the handler capability in `irq_slot`.
    fn irq_ack(&mut self, irq_slot: u64);
    /// Reports an event the loop could not deliver or a handler error (debug console on seL4):
    /// only what the handler's own [`Handler::report`] did not take.
    fn report(&mut self, what: &str, detail: &dyn core::fmt::Display);
}

/// The channels system.xml grants this PD, as the Microkit tool patches them into
/// `microkit_irqs`, `microkit_notifications` and `microkit_pps`, and whether it is passive.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Grants {
    /// Channels that are IRQs.
    pub irqs: u64,
    /// Channels this PD may notify.
    pub notifications: u64,
    /// Channels this PD may call (protected procedure calls).
    pub pps: u64,
    /// Passive PD: gives its scheduling context back after init.
    pub passive: bool,
}

impl Grants {
    /// No channel granted (a placeholder before the patched grants are read).
    pub const NONE: Grants = Grants {
        irqs: 0,
        notifications: 0,
        pps: 0,
        passive: false,
    };
    /// Whether `ch` may be notified.
    pub const fn may_notify(&self, ch: Channel) -> bool {
        self.notifications & (1 << ch.index()) != 0
    }
    /// Whether `ch` is an IRQ.
    pub const fn is_irq(&self, ch: Channel) -> bool {
        self.irqs & (1 << ch.index()) != 0
    }
    /// Whether `ch` may be called.
    pub const fn may_call(&self, ch: Channel) -> bool {
        self.pps & (1 << ch.index()) != 0
    }
}

/// A signal waiting for the next receive: (capability slot, message).
type Signal = (u64, MessageInfo);

/// The loop's state between events.
pub struct EventLoop<T: Transport> {
    transport: T,
    grants: Grants,
    reply: Option<MessageInfo>,
    signal: Option<Signal>,
}

impl<T: Transport> EventLoop<T> {
    /// A loop over `transport` for a PD with `grants`. A passive PD's first receive carries the
    /// signal that tells the monitor its initialisation is complete.
    pub fn new(transport: T, grants: Grants) -> Self {
        let signal = grants
            .passive
            .then_some((slot::MONITOR_EP, MessageInfo::new(0, 0)));
        Self {
            transport,
            grants,
            reply: None,
            signal,
        }
    }

    /// The transport (tests inspect what was sent).
    pub fn transport(&self) -> &T {
        &self.transport
    }

    /// Acknowledges every IRQ once before the first receive, as libmicrokit does (seL4 issue
    /// 1536: an IRQ that fired before its handler was bound is otherwise never delivered).
    pub fn start(&mut self) {
        let mut irqs = self.grants.irqs;
        while irqs != 0 {
            let ch = irqs.trailing_zeros() as u64;
            irqs &= irqs - 1;
            self.transport.irq_ack(slot::BASE_IRQ + ch);
        }
    }

    /// Waits for one event and hands it to `handler`.
    pub fn step<H: Handler>(&mut self, handler: &mut H) {
        let (badge, info) = if let Some(reply) = self.reply.take() {
            if let Some((dest, msg)) = self.signal.take() {
                self.transport.send(dest, msg);
            }
            self.transport.reply_recv(reply)
        } else if let Some((dest, msg)) = self.signal.take() {
            self.transport.nb_send_recv(dest, msg)
        } else {
            self.transport.recv()
        };
        self.dispatch(handler, badge, info);
    }

    /// Runs forever.
    pub fn run<H: Handler>(mut self, handler: &mut H) -> ! {
        self.start();
        loop {
            self.step(handler);
        }
    }

    fn dispatch<H: Handler>(&mut self, handler: &mut H, badge: u64, info: MessageInfo) {
        if badge & (1 << badge::FAULT_BIT) != 0 {
            let id = badge & badge::CHILD_MASK;
            match Child::try_new(id) {
                Some(child) => match handler.fault(child, info) {
                    Ok(reply) => self.reply = reply,
                    Err(e) => self.report(handler, "fault handler failed", &e),
                },
                None => self.report(handler, "fault from unknown child", &id),
            }
        } else if badge & (1 << badge::ENDPOINT_BIT) != 0 {
            // A protected call must always be answered, or the caller stays blocked.
            let id = badge & badge::CHANNEL_MASK;
            self.reply = Some(match Channel::try_new(id) {
                Some(ch) => match handler.protected(ch, info) {
                    Ok(reply) => reply,
                    Err(e) => {
                        self.report(handler, "protected handler failed", &e);
                        MessageInfo::new(error::ILLEGAL_OPERATION, 0)
                    }
                },
                None => {
                    self.report(handler, "protected call on invalid channel", &id);
                    MessageInfo::new(error::INVALID_ARGUMENT, 0)
                }
            });
        } else if let Err(e) = handler.notified(ChannelSet::from_badge(badge)) {
            self.report(handler, "notified handler failed", &e);
        }
        if let Some(action) = handler.take_deferred_action() {
            self.defer(handler, action);
        }
    }

    /// The handler's own output first ([`Handler::report`]), else the transport's.
    fn report<H: Handler>(&mut self, handler: &mut H, what: &str, detail: &dyn core::fmt::Display) {
        if !handler.report(what, detail) {
            self.transport.report(what, detail);
        }
    }

    fn defer<H: Handler>(&mut self, handler: &mut H, action: DeferredAction) {
        let signal = match action {
            DeferredAction::Notify(ch) if self.grants.may_notify(ch) => {
                (ch.notification_slot(), MessageInfo::new(0, 0))
            }
            DeferredAction::IrqAck(ch) if self.grants.is_irq(ch) => {
                (ch.irq_slot(), MessageInfo::new(LABELS.irq_ack_irq, 0))
            }
            DeferredAction::Notify(ch) | DeferredAction::IrqAck(ch) => {
                self.report(
                    handler,
                    "deferred action on a channel not granted",
                    &ch.index(),
                );
                return;
            }
        };
        // Only one signal rides on a receive; an older one goes out now.
        if let Some((dest, msg)) = self.signal.replace(signal) {
            self.transport.send(dest, msg);
        }
    }
}
