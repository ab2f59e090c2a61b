//! The placement policy, pure: from what is known about the nodes now, how long a middleware
//! holds back its pull, whether a time-shiftable job starts or waits, and which nodes an
//! executor Pod prefers. No I/O and no clock: every input is an argument, so every rule is
//! unit-tested here.
//!
//! The guarantees:
//! - **No more than `max_delay` of queue time for placement alone**: a middleware holds back
//!   for at most `max_delay` before it pulls, and not at all when it has room and is the
//!   greenest node with room, or when work is waiting in the stream (a backlog: every node
//!   works).
//! - **A shiftable job always starts in time**: it waits only while its latest start
//!   ([`START_MARGIN`] before `not_after`) is ahead and the node it reached is not green
//!   enough or has no slot to spare, and never past that.

use std::time::Duration;

use chrono::{DateTime, Utc};
use cola_wire::energy::{NodeName, Share};

use super::forecast::Outlook;

/// How much greener another node must be for a middleware to hold back for it: readings
/// differing less than this count as the same.
pub const GREENER_BY: f64 = 0.05;
/// How much greener a node without a free slot must be for a middleware with one to hold back
/// for it all the same.
pub const MUCH_GREENER: f64 = 0.25;
/// How long before its `not_after` a waiting shiftable job is released, come what may (time
/// for the queue, a pull and its executor's start).
pub const START_MARGIN: Duration = Duration::from_secs(2);
/// How much below the best share the forecast holds before its deadline a shiftable job still
/// takes, and how much better than now the forecast must be for it to wait (days differ:
/// yesterday is a guide, not a promise).
pub const BELOW_FORECAST: f64 = 0.1;
/// How long a shiftable job that reached a node not green enough, while a green node has
/// room, goes back to the stream for: long enough for the green node's pull to take it.
pub const HAND_OVER_AFTER: Duration = Duration::from_millis(100);

/// What is known now about one node with a middleware.
#[derive(Debug, Clone, PartialEq)]
pub struct NodeState {
    pub node: NodeName,
    /// Its renewable share, from a fresh reading; `None`: unknown (grid power).
    pub share: Option<Share>,
    /// Jobs its middleware could start now.
    pub free: u32,
    /// Jobs its middleware runs at once.
    pub slots: u32,
}

impl NodeState {
    fn share(&self) -> f64 {
        self.share.map_or(0.0, Share::get)
    }

    fn room(&self) -> Room {
        Room {
            free: self.free,
            slots: self.slots,
        }
    }
}

/// A middleware's room: its free slots, of all it has.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Room {
    pub free: u32,
    pub slots: u32,
}

impl Room {
    /// Whether work that can wait may take a slot: one stays free for work that cannot, unless
    /// there is only one.
    pub fn spare(self) -> bool {
        self.free > 1 || (self.slots <= 1 && self.free > 0)
    }
}

/// The policy's settings.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Policy {
    /// The most queue time placement alone adds to a job.
    pub max_delay: Duration,
    /// The renewable share a shiftable job waits for.
    pub green_share: Share,
    /// How often a waiting shiftable job is looked at again.
    pub recheck: Duration,
}

/// What to do with a time-shiftable job now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shift {
    /// Start it (a node is green enough, or its latest start has come).
    Start,
    /// Look at it again after this long.
    Wait(Duration),
}

impl Policy {
    /// How long the middleware of `me`, with `free_here` slots free, waits before it pulls,
    /// with `nodes` as they are now (`me` among them or not) and `backlog` when work waits in
    /// the stream: zero when no other node is better; otherwise a part of `max_delay` that
    /// grows with the number of better nodes (the greenest pulls at once, the next a little
    /// later, the brownest last), so the greener a node the more of the work it takes.
    /// Another node with room is better when it is greener, or when this one has no free slot
    /// (what it pulled would wait for one while that node is idle); one without room, when it
    /// is [`MUCH_GREENER`] and this one has room (a slot there frees within the wait more
    /// often than not, and the wait looks again at every change).
    pub fn hold_back(
        &self,
        me: &NodeName,
        free_here: u32,
        nodes: &[NodeState],
        backlog: bool,
    ) -> Duration {
        if backlog {
            return Duration::ZERO;
        }
        let mine = nodes
            .iter()
            .find(|n| &n.node == me)
            .map_or(0.0, NodeState::share);
        let much_greener = |n: &NodeState| n.share() > mine + MUCH_GREENER;
        let others: Vec<&NodeState> = nodes
            .iter()
            .filter(|n| &n.node != me && (n.free > 0 || much_greener(n)))
            .collect();
        let better = others
            .iter()
            .filter(|n| match n.free {
                0 => free_here > 0,
                _ => free_here == 0 || n.share() > mine + GREENER_BY,
            })
            .count();
        if better == 0 {
            return Duration::ZERO;
        }
        self.max_delay.mul_f64(better as f64 / others.len() as f64)
    }

    /// The share a shiftable job waits for, with `best_now` the greenest node's share now:
    /// - without a forecast, `green_share`;
    /// - when the forecast (what the same stretch brought a period before) holds nothing
    ///   better than its start, to within [`BELOW_FORECAST`]: nothing better is coming, so the
    ///   greenest nodes now (within [`GREENER_BY`] of `best_now`, and never more than
    ///   `green_share`);
    /// - else `green_share`, or a little less than the best the forecast holds when that is
    ///   lower: no job waits for sun its window will not see.
    pub fn wanted_share(&self, forecast: Option<Outlook>, best_now: f64) -> f64 {
        let green = self.green_share.get();
        match forecast {
            None => green,
            Some(o) if o.best.get() <= o.now.get() + BELOW_FORECAST => {
                green.min(best_now - GREENER_BY)
            }
            Some(o) => green.min(o.best.get() - BELOW_FORECAST),
        }
    }

    /// Whether a job that may start as late as `not_after`, and reached the middleware of
    /// `here` with its room (`None`: it does not matter which, a cluster places the job),
    /// starts `now`, a node being green when its share is at least
    /// [`Policy::wanted_share`] with the `forecast`:
    /// - when its latest start has come, wherever it is;
    /// - when `here` is green and has a slot to spare (work that cannot wait keeps the last
    ///   one, see [`Room::spare`]);
    /// - when some other node that green has a slot to spare, it goes back for
    ///   [`HAND_OVER_AFTER`] for that node to take (with `here` `None`: it starts when any
    ///   green node has room, and its Pod prefers the greenest);
    /// - else it waits (at most `recheck`), so jobs that waited for the sun start as the green
    ///   nodes free up, not all at once. Never past its latest start.
    pub fn shift(
        &self,
        now: DateTime<Utc>,
        not_after: DateTime<Utc>,
        here: Option<(&NodeName, Room)>,
        nodes: &[NodeState],
        forecast: Option<Outlook>,
    ) -> Shift {
        let latest_start = not_after - START_MARGIN;
        let Ok(left) = latest_start.signed_duration_since(now).to_std() else {
            return Shift::Start;
        };
        if left.is_zero() {
            return Shift::Start;
        }
        let best_now = nodes.iter().map(NodeState::share).fold(0.0, f64::max);
        let wanted = self.wanted_share(forecast, best_now);
        let mut green = nodes.iter().filter(|n| n.share() >= wanted);
        let Some((me, room)) = here else {
            return match green.any(|n| n.free > 0) {
                true => Shift::Start,
                false => Shift::Wait(left.min(self.recheck)),
            };
        };
        let green_here = nodes.iter().any(|n| &n.node == me && n.share() >= wanted);
        if green_here && room.spare() {
            return Shift::Start;
        }
        match green.any(|n| &n.node != me && n.room().spare()) {
            true => Shift::Wait(left.min(HAND_OVER_AFTER)),
            false => Shift::Wait(left.min(self.recheck)),
        }
    }
}

/// The weight (1 to 100) of a Kubernetes preferred node affinity term for each node with a
/// fresh reading above zero, greener higher: the scheduler then places an executor Pod on the
/// greenest node that has room, and on any node when none of them has.
pub fn node_weights(readings: &[(NodeName, Share)]) -> Vec<(NodeName, i32)> {
    readings
        .iter()
        .filter(|(_, share)| share.get() > 0.0)
        .map(|(node, share)| (node.clone(), 1 + (share.get() * 99.0).round() as i32))
        .collect()
}

/// The nodes an executor Pod is required to run on while they have room: those within
/// [`GREENER_BY`] of the greenest fresh reading. None when no reading is above that (nothing is
/// greener than grid power by enough to matter). A node without a fresh reading is never among
/// them: it counts as grid power.
pub fn required_nodes(readings: &[(NodeName, Share)]) -> Vec<NodeName> {
    let best = readings.iter().map(|(_, s)| s.get()).fold(0.0, f64::max);
    if best <= GREENER_BY {
        return Vec::new();
    }
    readings
        .iter()
        .filter(|(_, share)| share.get() >= best - GREENER_BY)
        .map(|(node, _)| node.clone())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A node with one slot, `free` of it free.
    fn node(name: &str, share: Option<f64>, free: u32) -> NodeState {
        NodeState {
            node: NodeName::parse(name).unwrap(),
            share: share.map(|s| Share::new(s).unwrap()),
            free,
            slots: 1,
        }
    }

    fn policy() -> Policy {
        Policy {
            max_delay: Duration::from_millis(200),
            green_share: Share::new(0.5).unwrap(),
            recheck: Duration::from_secs(30),
        }
    }

    fn me(name: &str) -> NodeName {
        NodeName::parse(name).unwrap()
    }

    #[test]
    fn the_greenest_node_pulls_at_once_and_the_others_in_order() {
        let nodes = [
            node("a", Some(0.9), 1),
            node("b", Some(0.5), 1),
            node("c", None, 1),
        ];
        let p = policy();
        assert_eq!(p.hold_back(&me("a"), 1, &nodes, false), Duration::ZERO);
        assert_eq!(
            p.hold_back(&me("b"), 1, &nodes, false),
            Duration::from_millis(100)
        );
        assert_eq!(
            p.hold_back(&me("c"), 1, &nodes, false),
            Duration::from_millis(200)
        );
    }

    #[test]
    fn never_more_than_the_most_delay() {
        let mut nodes: Vec<NodeState> = (0..20)
            .map(|i| node(&format!("n{i}"), Some(0.04 * i as f64 + 0.1), 3))
            .collect();
        nodes.push(node("me", Some(0.0), 1));
        assert_eq!(
            policy().hold_back(&me("me"), 1, &nodes, false),
            Duration::from_millis(200)
        );
        // Not among the nodes (no presence yet): holds back as a node without power would.
        assert!(policy().hold_back(&me("x"), 1, &nodes, false) <= Duration::from_millis(200));
    }

    #[test]
    fn a_backlog_makes_every_node_work() {
        let nodes = [node("a", Some(1.0), 1), node("b", Some(0.0), 1)];
        assert_eq!(
            policy().hold_back(&me("b"), 1, &nodes, true),
            Duration::ZERO
        );
    }

    #[test]
    fn full_nodes_and_near_equal_shares_are_not_waited_for() {
        let full = [node("a", Some(0.2), 0), node("b", Some(0.0), 1)];
        assert_eq!(
            policy().hold_back(&me("b"), 1, &full, false),
            Duration::ZERO
        );
        // Unless it is much greener: then for a while (its slot frees more often than not).
        let full_of_sun = [
            node("a", Some(1.0), 0),
            node("b", Some(0.0), 1),
            node("c", Some(0.0), 1),
        ];
        assert_eq!(
            policy().hold_back(&me("b"), 1, &full_of_sun, false),
            Duration::from_millis(100)
        );
        // Full here too: not for a, only for c, which has room.
        assert_eq!(
            policy().hold_back(&me("b"), 0, &full_of_sun, false),
            Duration::from_millis(100)
        );
        let both_full = [node("a", Some(1.0), 0), node("b", Some(0.0), 1)];
        assert_eq!(
            policy().hold_back(&me("b"), 0, &both_full, false),
            Duration::ZERO
        );
        // Nor under a backlog.
        assert_eq!(
            policy().hold_back(&me("b"), 1, &full_of_sun, true),
            Duration::ZERO
        );
        let close = [node("a", Some(0.52), 1), node("b", Some(0.5), 1)];
        assert_eq!(
            policy().hold_back(&me("b"), 1, &close, false),
            Duration::ZERO
        );
        // Nobody knows anything: everybody pulls.
        let unknown = [node("a", None, 1), node("b", None, 1)];
        assert_eq!(
            policy().hold_back(&me("b"), 1, &unknown, false),
            Duration::ZERO
        );
    }

    #[test]
    fn a_node_without_a_free_slot_leaves_the_work_to_one_with_room() {
        let nodes = [node("a", Some(1.0), 0), node("b", Some(0.0), 1)];
        // The greenest node, busy: what it pulled would wait for a slot while b is idle.
        assert_eq!(
            policy().hold_back(&me("a"), 0, &nodes, false),
            Duration::from_millis(200)
        );
        assert_eq!(
            policy().hold_back(&me("a"), 1, &nodes, false),
            Duration::ZERO
        );
        // Nobody else has room: it pulls.
        let all_busy = [node("a", Some(1.0), 0), node("b", Some(0.0), 0)];
        assert_eq!(
            policy().hold_back(&me("a"), 0, &all_busy, false),
            Duration::ZERO
        );
    }

    const ONE_FREE: Room = Room { free: 1, slots: 1 };

    #[test]
    fn a_shiftable_job_waits_for_green_power_until_its_latest_start() {
        let p = policy();
        let now = Utc::now();
        let b = me("b");
        let grey = [node("a", Some(0.2), 1), node("b", None, 1)];
        let hour = now + chrono::Duration::hours(1);
        assert_eq!(
            p.shift(now, hour, Some((&b, ONE_FREE)), &grey, None),
            Shift::Wait(p.recheck)
        );
        // Near its deadline: waits only up to its latest start.
        let soon = now + chrono::Duration::seconds(10);
        assert_eq!(
            p.shift(now, soon, Some((&b, ONE_FREE)), &grey, None),
            Shift::Wait(Duration::from_secs(8))
        );
        // At or past its latest start: starts, wherever it is.
        for late in [
            now + chrono::Duration::seconds(2),
            now - chrono::Duration::seconds(1),
        ] {
            assert_eq!(
                p.shift(now, late, Some((&b, ONE_FREE)), &grey, None),
                Shift::Start
            );
        }
        // Green enough here: starts.
        let green_b = [node("a", Some(0.2), 1), node("b", Some(0.5), 1)];
        assert_eq!(
            p.shift(now, hour, Some((&b, ONE_FREE)), &green_b, None),
            Shift::Start
        );
        // Green elsewhere, with room: goes back for that node to take it; a cluster places it
        // (its Pod prefers that node).
        let green_a = [node("a", Some(0.5), 1), node("b", None, 1)];
        assert_eq!(
            p.shift(now, hour, Some((&b, ONE_FREE)), &green_a, None),
            Shift::Wait(HAND_OVER_AFTER)
        );
        assert_eq!(p.shift(now, hour, None, &green_a, None), Shift::Start);
        // Green elsewhere but full: waits for it to free up.
        let busy = [node("a", Some(0.9), 0), node("b", None, 1)];
        assert_eq!(
            p.shift(now, hour, Some((&b, ONE_FREE)), &busy, None),
            Shift::Wait(p.recheck)
        );
        assert_eq!(
            p.shift(now, hour, None, &busy, None),
            Shift::Wait(p.recheck)
        );
    }

    #[test]
    fn a_shiftable_job_leaves_a_green_nodes_last_slot_to_work_that_cannot_wait() {
        let p = policy();
        let now = Utc::now();
        let hour = now + chrono::Duration::hours(1);
        let (a, b) = (me("a"), me("b"));
        let two_slots = |name: &str, share: f64, free: u32| NodeState {
            slots: 2,
            ..node(name, Some(share), free)
        };
        let nodes = [two_slots("a", 0.9, 1), two_slots("b", 0.9, 2)];
        let room = |free| Room { free, slots: 2 };
        // Green here with a slot to spare: starts.
        assert_eq!(
            p.shift(now, hour, Some((&b, room(2))), &nodes, None),
            Shift::Start
        );
        // Green here, but its last free slot: goes back for b, which has two.
        assert_eq!(
            p.shift(now, hour, Some((&a, room(1))), &nodes, None),
            Shift::Wait(HAND_OVER_AFTER)
        );
        // Nobody green has a slot to spare: waits, and starts in time all the same.
        let busy = [two_slots("a", 0.9, 1), two_slots("b", 0.9, 1)];
        assert_eq!(
            p.shift(now, hour, Some((&a, room(1))), &busy, None),
            Shift::Wait(p.recheck)
        );
        assert_eq!(
            p.shift(now, now, Some((&a, room(1))), &busy, None),
            Shift::Start
        );
        // A node with a single slot lends it.
        assert!(Room { free: 1, slots: 1 }.spare());
        assert!(!Room { free: 0, slots: 1 }.spare());
        assert!(!Room { free: 1, slots: 4 }.spare());
    }

    #[test]
    fn a_shiftable_job_waits_for_no_more_sun_than_the_forecast_holds() {
        let p = Policy {
            green_share: Share::new(0.8).unwrap(),
            ..policy()
        };
        let share = |s| Share::new(s).unwrap();
        let outlook = |now, best| {
            Some(Outlook {
                now: share(now),
                best: share(best),
            })
        };
        let now = Utc::now();
        let evening = now + chrono::Duration::hours(6);
        let (a, b) = (me("a"), me("b"));
        let fading = [node("a", Some(0.2), 1), node("b", Some(0.45), 1)];
        // No forecast: waits for 80%, which this evening will not bring.
        assert_eq!(
            p.shift(now, evening, Some((&b, ONE_FREE)), &fading, None),
            Shift::Wait(p.recheck)
        );
        // Yesterday's evening never passed 50%: 45% now is as good as it gets.
        assert_eq!(
            p.shift(
                now,
                evening,
                Some((&b, ONE_FREE)),
                &fading,
                outlook(0.3, 0.5)
            ),
            Shift::Start
        );
        // Yesterday's evening was at its best at its start, sunnier than today: nothing better
        // is coming, the greenest node now takes it...
        assert_eq!(
            p.shift(
                now,
                evening,
                Some((&b, ONE_FREE)),
                &fading,
                outlook(0.95, 0.99)
            ),
            Shift::Start
        );
        // ... and a browner one hands it over.
        assert_eq!(
            p.shift(
                now,
                evening,
                Some((&a, ONE_FREE)),
                &fading,
                outlook(0.95, 0.99)
            ),
            Shift::Wait(HAND_OVER_AFTER)
        );
        // A night with no sun before the deadline: starts at once, anywhere.
        let dark = [node("a", Some(0.0), 1), node("b", None, 1)];
        assert_eq!(
            p.shift(now, evening, Some((&b, ONE_FREE)), &dark, outlook(0.0, 0.0)),
            Shift::Start
        );
        // Before dawn, with full sun ahead: waits for the threshold, as without a forecast.
        assert_eq!(
            p.shift(
                now,
                evening,
                Some((&b, ONE_FREE)),
                &fading,
                outlook(0.1, 1.0)
            ),
            Shift::Wait(p.recheck)
        );
        assert!((p.wanted_share(outlook(0.1, 1.0), 0.45) - 0.8).abs() < 1e-9);
        assert!((p.wanted_share(outlook(0.1, 0.6), 0.45) - 0.5).abs() < 1e-9);
        assert!((p.wanted_share(outlook(0.9, 0.9), 1.0) - 0.8).abs() < 1e-9);
        assert!((p.wanted_share(outlook(0.9, 0.9), 0.45) - 0.4).abs() < 1e-9);
        assert!((p.wanted_share(None, 0.45) - 0.8).abs() < 1e-9);
    }

    #[test]
    fn pods_are_required_on_the_greenest_nodes() {
        let share = |s| Share::new(s).unwrap();
        let readings = [
            (me("a"), share(0.9)),
            (me("b"), share(0.87)),
            (me("c"), share(0.3)),
        ];
        assert_eq!(required_nodes(&readings), [me("a"), me("b")]);
        // Night everywhere: nothing.
        let dark = [(me("a"), Share::ZERO), (me("b"), share(0.04))];
        assert!(required_nodes(&dark).is_empty());
        assert!(required_nodes(&[]).is_empty());
    }

    #[test]
    fn pods_prefer_greener_nodes() {
        let readings = [
            (me("a"), Share::new(1.0).unwrap()),
            (me("b"), Share::new(0.25).unwrap()),
            (me("c"), Share::ZERO),
        ];
        assert_eq!(node_weights(&readings), [(me("a"), 100), (me("b"), 26)]);
    }
}
