// Package redisfleet shares breaker state across processes through Redis:
// when enough replicas of a service see the same upstream fail, every
// replica's breaker of that name opens together, and one successful probe
// closes them all. Start with [New], which attaches a [Fleet] to an
// [engine.Engine]; [Options] holds the quorum and timings:
//
//	fleet, err := redisfleet.New(e, rdb, redisfleet.Options{Quorum: 3})
//	if err != nil {
//		return err
//	}
//	defer fleet.Close()
//
// Callers never touch Redis. A Fleet is one goroutine per engine that
// watches the engine's transition stream and talks to Redis on its own:
//
//   - When a local breaker opens on its own evidence, the fleet casts a
//     vote for that breaker in Redis (a sorted set of replicas, each vote
//     expiring after VoteTTL). A Lua script counts the live votes and, once
//     there are Quorum of them, opens the breaker fleet-wide: it bumps the
//     breaker's generation, records how long it stays open, and publishes
//     the event. So one bad replica cannot open the fleet by itself, but
//     a trip with an explicit signal from the upstream (a Retry-After)
//     opens the fleet at once, quorum or not.
//   - Other replicas apply a published open with
//     [engine.Breaker.ForceOpen], for the time left. The newest generation
//     wins; a longer open period is never cut short by a shorter one.
//   - When a fleet-wide open period ends, one replica takes the probe
//     lease in Redis; the others stay open until it ends. When the probe
//     succeeds (half_open → closed), the fleet closes the breaker
//     fleet-wide and the others reset theirs.
//   - With Options.FailureRate set, every replica also sends its breakers'
//     outcome counts in batches, and the fleet opens a breaker whose
//     failure rate across all replicas reaches it, even if no replica has
//     tripped on its own (failures must still come from Quorum replicas).
//   - Pub/sub is at most once, so every Resync interval the fleet also
//     reads the state of every local breaker in one pipeline and applies
//     what it missed.
//
// Any Redis error leaves the breakers to decide locally; the fleet tries
// again on the next event or resync. Keys are "<prefix>{<name>}:state",
// "<prefix>{<name>}:votes", "<prefix>{<name>}:probe" and, with
// FailureRate, "<prefix>{<name>}:window", with the name as a hash tag so a
// breaker's keys share a Redis Cluster slot; events go to the
// "<prefix>events" channel.
package redisfleet
