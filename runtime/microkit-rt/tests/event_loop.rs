//! The event loop against a scripted transport: which syscall it makes for each situation, and
//! what the handler sees. This is libmicrokit's `handler_loop` contract, executable.

use microkit_rt::abi::{LABELS, MessageInfo, error, slot};
use microkit_rt::event_loop::{EventLoop, Grants, Transport};
use microkit_rt::{Channel, ChannelSet, Child, DeferredAction, FaultReply, Handler};
use std::collections::VecDeque;

#[derive(Debug, Clone, PartialEq, Eq)]
enum Sys {
    Recv,
    ReplyRecv(u64),
    NbSendRecv(u64, u64),
    Send(u64, u64),
    IrqAck(u64),
    Report(String),
}

#[derive(Default)]
struct Script {
    events: VecDeque<(u64, MessageInfo)>,
    calls: Vec<Sys>,
}

impl Transport for Script {
    fn recv(&mut self) -> (u64, MessageInfo) {
        self.calls.push(Sys::Recv);
        self.events.pop_front().unwrap()
    }
    fn reply_recv(&mut self, reply: MessageInfo) -> (u64, MessageInfo) {
        self.calls.push(Sys::ReplyRecv(reply.label()));
        self.events.pop_front().unwrap()
    }
    fn nb_send_recv(&mut self, dest: u64, msg: MessageInfo) -> (u64, MessageInfo) {
        self.calls.push(Sys::NbSendRecv(dest, msg.label()));
        self.events.pop_front().unwrap()
    }
    fn send(&mut self, dest: u64, msg: MessageInfo) {
        self.calls.push(Sys::Send(dest, msg.label()));
    }
    fn irq_ack(&mut self, irq_slot: u64) {
        self.calls.push(Sys::IrqAck(irq_slot));
    }
    fn report(&mut self, what: &str, detail: &dyn std::fmt::Display) {
        self.calls.push(Sys::Report(format!("{what}: {detail}")));
    }
}

#[derive(Default)]
struct Recorder {
    seen: Vec<String>,
    fault_reply: Option<MessageInfo>,
    defer: Vec<DeferredAction>,
    fail: bool,
    /// `Some`: the handler's own output takes the loop's reports (`Handler::report`).
    own_output: Option<Vec<String>>,
}

impl Handler for Recorder {
    type Error = &'static str;
    fn notified(&mut self, channels: ChannelSet) -> Result<(), &'static str> {
        self.seen.push(format!(
            "notified {:?}",
            channels.iter().map(|c| c.index()).collect::<Vec<_>>()
        ));
        if self.fail { Err("boom") } else { Ok(()) }
    }
    fn protected(&mut self, ch: Channel, msg: MessageInfo) -> Result<MessageInfo, &'static str> {
        self.seen
            .push(format!("protected {} label {}", ch.index(), msg.label()));
        if self.fail {
            Err("boom")
        } else {
            Ok(MessageInfo::new(7, 0))
        }
    }
    fn fault(&mut self, child: Child, msg: MessageInfo) -> Result<FaultReply, &'static str> {
        self.seen
            .push(format!("fault {} label {}", child.index(), msg.label()));
        Ok(self.fault_reply)
    }
    fn take_deferred_action(&mut self) -> Option<DeferredAction> {
        self.defer.pop()
    }
    fn report(&mut self, what: &str, detail: &dyn std::fmt::Display) -> bool {
        match &mut self.own_output {
            Some(out) => {
                out.push(format!("{what}: {detail}"));
                true
            }
            None => false,
        }
    }
}

fn run(grants: Grants, events: &[u64], h: &mut Recorder, steps: usize) -> Vec<Sys> {
    let script = Script {
        events: events
            .iter()
            .map(|&b| (b, MessageInfo::new(3, 0)))
            .collect(),
        calls: vec![],
    };
    let mut el = EventLoop::new(script, grants);
    el.start();
    for _ in 0..steps {
        el.step(h);
    }
    el.transport().calls.clone()
}

const ALL: Grants = Grants {
    irqs: 0,
    notifications: u64::MAX >> 2,
    pps: u64::MAX >> 2,
    passive: false,
};

#[test]
fn notification_bits_become_one_channel_set() {
    let mut h = Recorder::default();
    let calls = run(ALL, &[0b1011], &mut h, 1);
    assert_eq!(h.seen, ["notified [0, 1, 3]"]);
    assert_eq!(calls, [Sys::Recv]);
}

#[test]
fn protected_call_is_answered_with_reply_recv() {
    let mut h = Recorder::default();
    let calls = run(ALL, &[1 << 63 | 5, 1], &mut h, 2);
    assert_eq!(h.seen, ["protected 5 label 3", "notified [0]"]);
    assert_eq!(calls, [Sys::Recv, Sys::ReplyRecv(7)]);
}

#[test]
fn a_failing_protected_handler_still_replies() {
    let mut h = Recorder {
        fail: true,
        ..Default::default()
    };
    let calls = run(ALL, &[1 << 63 | 5, 1], &mut h, 2);
    assert_eq!(calls[2], Sys::ReplyRecv(error::ILLEGAL_OPERATION));
    assert!(matches!(&calls[1], Sys::Report(r) if r.contains("boom")));
}

#[test]
fn fault_reply_only_when_the_handler_gives_one() {
    let mut h = Recorder::default();
    let calls = run(ALL, &[1 << 62 | 2, 1 << 62 | 2], &mut h, 2);
    assert_eq!(
        calls,
        [Sys::Recv, Sys::Recv],
        "no reply: the faulting thread stays blocked"
    );
    let mut h = Recorder {
        fault_reply: Some(MessageInfo::new(0, 0)),
        ..Default::default()
    };
    let calls = run(ALL, &[1 << 62 | 2, 1], &mut h, 2);
    assert_eq!(h.seen[0], "fault 2 label 3");
    assert_eq!(calls, [Sys::Recv, Sys::ReplyRecv(0)]);
}

#[test]
fn fault_badge_with_an_impossible_child_is_reported() {
    let mut h = Recorder::default();
    let calls = run(ALL, &[1 << 62 | 0xfe], &mut h, 1);
    assert!(h.seen.is_empty());
    assert!(matches!(&calls[1], Sys::Report(r) if r.contains("unknown child")));
}

#[test]
fn deferred_notify_rides_on_the_next_receive() {
    let mut h = Recorder {
        defer: vec![DeferredAction::Notify(Channel::new(4))],
        ..Default::default()
    };
    let calls = run(ALL, &[1, 1], &mut h, 2);
    assert_eq!(
        calls,
        [
            Sys::Recv,
            Sys::NbSendRecv(slot::BASE_OUTPUT_NOTIFICATION + 4, 0)
        ]
    );
}

#[test]
fn deferred_signal_is_flushed_before_a_reply() {
    let mut h = Recorder {
        defer: vec![DeferredAction::IrqAck(Channel::new(2))],
        ..Default::default()
    };
    let grants = Grants {
        irqs: 1 << 2,
        ..ALL
    };
    let calls = run(grants, &[1 << 63 | 1, 1], &mut h, 2);
    assert_eq!(
        calls,
        [
            Sys::IrqAck(slot::BASE_IRQ + 2),
            Sys::Recv,
            Sys::Send(slot::BASE_IRQ + 2, LABELS.irq_ack_irq),
            Sys::ReplyRecv(7)
        ]
    );
}

#[test]
fn deferred_action_on_an_ungranted_channel_is_dropped() {
    let mut h = Recorder {
        defer: vec![DeferredAction::Notify(Channel::new(9))],
        ..Default::default()
    };
    let calls = run(Grants::default(), &[1, 1], &mut h, 2);
    assert!(matches!(&calls[1], Sys::Report(r) if r.contains("not granted")));
    assert_eq!(calls[2], Sys::Recv);
}

#[test]
fn a_handler_with_its_own_output_takes_every_report() {
    let mut h = Recorder {
        fail: true,
        own_output: Some(vec![]),
        defer: vec![DeferredAction::Notify(Channel::new(9))],
        ..Default::default()
    };
    // A failing notification (deferring to an ungranted channel), a failing protected call, a
    // fault from an impossible child.
    let calls = run(
        Grants::default(),
        &[1, 1 << 63 | 5, 1 << 62 | 0xfe, 1],
        &mut h,
        3,
    );
    assert!(
        !calls.iter().any(|c| matches!(c, Sys::Report(_))),
        "nothing left to the debug console: {calls:?}"
    );
    assert_eq!(
        h.own_output.unwrap(),
        [
            "notified handler failed: boom",
            "deferred action on a channel not granted: 9",
            "protected handler failed: boom",
            "fault from unknown child: 254",
        ]
    );
    assert_eq!(
        calls[2],
        Sys::ReplyRecv(error::ILLEGAL_OPERATION),
        "the call is still answered"
    );
}

#[test]
fn passive_pd_signals_the_monitor_with_its_first_receive() {
    let mut h = Recorder::default();
    let calls = run(
        Grants {
            passive: true,
            ..ALL
        },
        &[1, 1],
        &mut h,
        2,
    );
    assert_eq!(calls, [Sys::NbSendRecv(slot::MONITOR_EP, 0), Sys::Recv]);
}

#[test]
fn every_irq_is_acked_once_at_start() {
    let mut h = Recorder::default();
    let calls = run(
        Grants {
            irqs: 0b1001_0000_0001,
            ..ALL
        },
        &[],
        &mut h,
        0,
    );
    assert_eq!(
        calls,
        [
            Sys::IrqAck(slot::BASE_IRQ),
            Sys::IrqAck(slot::BASE_IRQ + 8),
            Sys::IrqAck(slot::BASE_IRQ + 11)
        ]
    );
}
