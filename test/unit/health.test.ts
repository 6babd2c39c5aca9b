import t from 'tap'
import { EndpointHealth } from '../../src/upstream/health.js'

t.test('offline marking: one probe after the cool-down, and every probe outcome settles the state', async (t) => {
  const changes: boolean[] = []
  const h = new EndpointHealth(2, 1000, (online) => changes.push(online))
  t.ok(h.admit(0).ok)
  h.failure(0)
  h.failure(0)
  t.ok(h.offline)
  t.notOk(h.admit(500).ok, 'offline during the cool-down')
  const probe = h.admit(1000)
  t.ok(probe.ok && probe.probe !== undefined, 'the first request after it is the probe')
  t.notOk(h.admit(1000).ok, 'only one probe at a time')
  // The probe ended without success or failure being recorded (a refusal, an unexpected error).
  h.settleProbe(probe, 1000)
  t.ok(h.offline, 'still offline')
  t.notOk(h.admit(1500).ok, 'a new cool-down started')
  const next = h.admit(2000)
  t.ok(next.ok, 'and a new probe follows it')
  h.success()
  t.notOk(h.offline)
  h.settleProbe(next, 2000)
  t.notOk(h.offline, 'settling a probe that succeeded changes nothing')
  t.same(changes, [false, true])
})

t.test('a request admitted while online does not settle a later probe', async (t) => {
  const h = new EndpointHealth(1, 1000, () => {})
  const early = h.admit(0)
  h.failure(0)
  const probe = h.admit(1000)
  t.ok(probe.ok)
  h.settleProbe(early, 1000)
  t.notOk(h.admit(1000).ok, 'the probe is still the only one in flight')
  h.success()
  t.notOk(h.offline)
})

t.test('a request admitted before the endpoint was set aside does not bring it back; its probe does', async (t) => {
  const h = new EndpointHealth(1, 1000, () => {})
  const inFlight = h.admit(0)
  h.failure(0)
  t.ok(h.offline)
  h.success(inFlight)
  t.ok(h.offline, 'the late success of an earlier request is not a probe')
  const probe = h.admit(1000)
  h.success(probe)
  t.notOk(h.offline, 'the probe is')
})
