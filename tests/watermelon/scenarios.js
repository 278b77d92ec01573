// The real WatermelonDB (LokiJS adapter, in memory under Node) syncing against a live Kith.
// Run by tests/integration/test_watermelon_client.py:
//   KITH_URL=http://… KITH_TOKENS='["<device 1 token>", "<device 2 token>"]' node scenarios.js NAME
// Exits non-zero on a failed assertion and on ANY warning or error WatermelonDB logs; prints
// one JSON line of figures on success.
'use strict'

const assert = require('node:assert/strict')
const { Q } = require('@nozbe/watermelondb')
const { hasUnsyncedChanges } = require('@nozbe/watermelondb/sync')
const { makeDatabase, kithSync } = require('./app')

// WatermelonDB reports sync anomalies through console.warn/console.error (its logger):
// each one fails the run.
const logged = []
for (const level of ['warn', 'error']) {
  const original = console[level]
  console[level] = (...args) => {
    logged.push(`${level}: ${args.map(String).join(' ')}`)
    original(...args)
  }
}

const baseUrl = process.env.KITH_URL
const tokens = JSON.parse(process.env.KITH_TOKENS || '[]')
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms))

function device(n) {
  const database = makeDatabase(`device-${n}-${Date.now()}`)
  const sync = (options = {}) => kithSync(database, { baseUrl, token: tokens[n], ...options })
  return { database, sync }
}

async function all(database, table) {
  return database.get(table).query().fetch()
}

async function one(database, table, id) {
  return database.get(table).find(id)
}

// A device's synced content: every record's raw columns, without WatermelonDB's bookkeeping.
async function content(database) {
  const out = {}
  for (const table of Object.keys(database.schema.tables)) {
    const rows = await all(database, table)
    out[table] = Object.fromEntries(
      rows
        .map((r) => {
          const { _status, _changed, ...raw } = r._raw
          return [r.id, raw]
        })
        .sort(([a], [b]) => (a < b ? -1 : 1)),
    )
  }
  return out
}

async function create(database, table, id, build) {
  return database.write(() =>
    database.get(table).create((record) => {
      record._raw.id = id // Kith ids are client-chosen; WatermelonDB's 16-char ids fit too
      build(record)
    }),
  )
}

async function edit(record, change) {
  return record.collection.database.write(() => record.update(change))
}

const scenarios = {
  // Two devices: create → sync → edit different fields of one contact offline → sync →
  // delete a contact (its interactions cascade) → sync.
  async twoDevices() {
    const a = device(0)
    const b = device(1)
    const met = new Date('2026-11-01T18:30:00.250Z')
    await create(a.database, 'contacts', 'contactAna000001', (c) => {
      c.displayName = 'Ana'
      c.circle = 'inner'
      c.tags = ['climbing', 'says "hi"', 'ção']
      c.cadenceDays = 14
    })
    await create(a.database, 'contacts', 'contactBo0000001', (c) => {
      c.displayName = 'Bo'
    })
    await create(a.database, 'interactions', 'interactBo000001', (i) => {
      i.contactIds = ['contactBo0000001']
      i.kind = 'in_person'
      i.occurredAt = met
      i.quality = 4
      i.feltCloser = true
    })
    await create(a.database, 'reflections', 'reflection000001', (r) => {
      r.occurredAt = met
      r.mood = 4
      r.body = 'a good walk'
      r.ucla3 = [1, 2, 1]
    })
    await a.sync()
    assert.equal(await hasUnsyncedChanges({ database: a.database }), false)
    await b.sync()
    const bo = await one(b.database, 'interactions', 'interactBo000001')
    assert.deepEqual(bo.contactIds, ['contactBo0000001'])
    assert.equal(bo.occurredAt.getTime(), met.getTime())
    assert.equal(bo.feltCloser, true)
    const anaOnB = await one(b.database, 'contacts', 'contactAna000001')
    assert.deepEqual(anaOnB.tags, ['climbing', 'says "hi"', 'ção'])
    assert.equal(anaOnB.relationship, 'other') // the server's default for a column never set
    assert.deepEqual((await one(b.database, 'reflections', 'reflection000001')).ucla3, [1, 2, 1])
    // The settings record Kith made at sign-up came down too.
    assert.equal((await one(b.database, 'settings', 'settings')).nudgesEnabled, true)

    // Offline, each device edits a different field of the same contact.
    await edit(await one(a.database, 'contacts', 'contactAna000001'), (c) => {
      c.notes = 'likes tea'
    })
    await sleep(5)
    await edit(anaOnB, (c) => {
      c.displayName = 'Ana Maria'
    })
    await a.sync()
    await b.sync()
    await a.sync()
    for (const d of [a, b]) {
      const ana = await one(d.database, 'contacts', 'contactAna000001')
      assert.equal(ana.displayName, 'Ana Maria')
      assert.equal(ana.notes, 'likes tea')
      assert.equal(ana.cadenceDays, 14)
    }

    // Deleting Bo on one device: the server tombstones his interaction (its only contact).
    await a.database.write(async () => {
      await (await one(a.database, 'contacts', 'contactBo0000001')).markAsDeleted()
    })
    await a.sync()
    await b.sync()
    await a.sync()
    for (const d of [a, b]) {
      assert.equal((await all(d.database, 'contacts')).length, 1)
      assert.equal((await all(d.database, 'interactions')).length, 0)
      assert.equal(await hasUnsyncedChanges({ database: d.database }), false)
    }
    assert.deepEqual(await content(a.database), await content(b.database))
    return { contacts: 1 }
  },

  // A value that lost the merge on the server comes back to the device that pushed it.
  async losingValue() {
    const a = device(0)
    const b = device(1)
    await create(a.database, 'contacts', 'contactCyd000001', (c) => {
      c.displayName = 'Cyd'
    })
    await a.sync()
    await b.sync()
    await edit(await one(a.database, 'contacts', 'contactCyd000001'), (c) => {
      c.displayName = 'Cyd (older edit, device A)'
    })
    await sleep(20)
    await edit(await one(b.database, 'contacts', 'contactCyd000001'), (c) => {
      c.displayName = 'Cyd (newer edit, device B)'
    })
    await b.sync()
    await a.sync() // A keeps its own value through the pull, then its push loses
    await a.sync() // …and this pull brings the winner
    for (const d of [a, b]) {
      const cyd = await one(d.database, 'contacts', 'contactCyd000001')
      assert.equal(cyd.displayName, 'Cyd (newer edit, device B)')
    }
    assert.deepEqual(await content(a.database), await content(b.database))
    return {}
  },

  // The push's answer is lost after the server applied it: the retry is applied once.
  async retriedPush() {
    const a = device(0)
    const b = device(1)
    await a.sync()
    for (let i = 0; i < 3; i++) {
      await create(a.database, 'contacts', `contactRetry0000${i}`, (c) => {
        c.displayName = `Retry ${i}`
      })
    }
    const answers = []
    let lose = true
    const send = async (url, init) => {
      const response = await fetch(url, init)
      if (url.includes('/push')) {
        answers.push(await response.clone().json())
        if (lose) {
          lose = false
          throw new Error('network: connection reset before the answer arrived')
        }
      }
      return response
    }
    await assert.rejects(a.sync({ send }), /connection reset/)
    assert.equal(await hasUnsyncedChanges({ database: a.database }), true)
    await a.sync({ send })
    assert.equal(answers.length, 2)
    assert.deepEqual(answers[1].batch_ids, answers[0].batch_ids)
    assert.equal(await hasUnsyncedChanges({ database: a.database }), false)
    await b.sync()
    const names = (await all(b.database, 'contacts')).map((c) => c.displayName).sort()
    assert.deepEqual(names, ['Retry 0', 'Retry 1', 'Retry 2'])
    // Both answers say what the batches did; the server's timestamp moved once (pytest checks
    // the conflict history and the sequence).
    return { batch_ids: answers[0].batch_ids }
  },

  // A first sync of a large space (the pytest seeds it through Kith's own push).
  async firstSync() {
    const a = device(0)
    const started = Date.now()
    await a.sync()
    const seconds = (Date.now() - started) / 1000
    const contacts = await a.database.get('contacts').query().fetchCount()
    const named = await a.database
      .get('contacts')
      .query(Q.where('display_name', 'Person 9999'))
      .fetchCount()
    assert.equal(named, 1)
    return { contacts, seconds }
  },
}

async function main() {
  const name = process.argv[2]
  assert.ok(scenarios[name], `unknown scenario ${name}`)
  const figures = await scenarios[name]()
  assert.deepEqual(logged, [], 'WatermelonDB logged warnings or errors')
  // LokiJS's autosave timer would keep Node alive: exit once the line is written.
  process.stdout.write(`${JSON.stringify({ scenario: name, ...figures })}\n`, () => process.exit(0))
}

main().catch((error) => {
  console.error(error && error.stack ? error.stack : error)
  process.exit(1)
})
