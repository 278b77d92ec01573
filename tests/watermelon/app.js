// A WatermelonDB app's side of Kith sync, as docs/watermelondb.md tells app developers to
// write it: the schema and models matching Kith's tables, and synchronize() against
// /v1/watermelon/pull|push. Plain Node (no Babel), so the decorators are applied by hand
// exactly as `@field('display_name') displayName` would apply them.
'use strict'

const { Database, Model, appSchema, tableSchema } = require('@nozbe/watermelondb')
const LokiJSAdapter = require('@nozbe/watermelondb/adapters/lokijs').default
const { synchronize } = require('@nozbe/watermelondb/sync')
const { field, date, json, readonly } = require('@nozbe/watermelondb/decorators')

// Every column isOptional: a column the app never set is null, and Kith applies its own
// default when the record is created (docs/watermelondb.md, "Schema").
const col = (name, type) => ({ name, type, isOptional: true })
const s = (name) => col(name, 'string')
const n = (name) => col(name, 'number')
const b = (name) => col(name, 'boolean')
const updatedAt = { name: 'updated_at', type: 'number' }

const schema = appSchema({
  version: 1,
  tables: [
    tableSchema({
      name: 'contacts',
      columns: [
        s('display_name'), s('relationship'), s('circle'), n('cadence_days'),
        s('preferred_kind'), s('notes'), s('birthday'), s('snoozed_until'), b('archived'),
        s('tags'), updatedAt,
      ],
    }),
    tableSchema({
      name: 'interactions',
      columns: [
        s('contact_ids'), s('kind'), n('occurred_at'), n('duration_min'), s('initiated_by'),
        n('quality'), b('felt_closer'), s('note'), updatedAt,
      ],
    }),
    tableSchema({
      name: 'reflections',
      columns: [
        n('occurred_at'), n('mood'), s('body'), s('gratitude'), s('interaction_id'),
        s('ucla3'), s('lsns6'), s('who5'), updatedAt,
      ],
    }),
    tableSchema({
      name: 'check_ins',
      columns: [n('occurred_at'), s('status'), n('mood'), s('note'), updatedAt],
    }),
    tableSchema({
      name: 'settings',
      columns: [
        s('time_zone'), s('quiet_hours_start'), s('quiet_hours_end'),
        s('preferred_nudge_time'), b('nudges_enabled'), n('max_nudges_per_week'),
        b('nudge_digest'), s('check_in_deadline'), n('check_in_grace_min'),
        s('rules_disabled'), updatedAt,
      ],
    }),
    tableSchema({
      name: 'insights',
      columns: [
        s('rule'), s('contact_id'), s('level'), s('title'), s('body'), s('evidence'),
        s('status'), n('raised_at'), updatedAt,
      ],
    }),
    tableSchema({
      name: 'care_summaries',
      columns: [
        s('display_name'), s('scopes'), s('summary'),
        n('computed_at'), updatedAt,
      ],
    }),
    tableSchema({
      name: 'alerts',
      columns: [
        s('alert_id'), s('kind'), n('raised_at'), s('status'), s('acknowledged_by'),
        n('acknowledged_at'), s('acknowledgements'), n('no_response_at'), n('resolved_at'),
        s('resolved_by'), s('message'), updatedAt,
      ],
    }),
  ],
})

// `@field('x') y`, `@date('x') y`, `@json('x', sanitizer) y`, `@readonly @date('updated_at')`.
const asIs = (value) => value
function decorate(modelClass, properties) {
  for (const [key, decorators] of Object.entries(properties)) {
    let descriptor = { configurable: true, enumerable: true, writable: true, initializer: undefined }
    for (const decorator of [...decorators].reverse()) {
      descriptor = decorator(modelClass.prototype, key, descriptor)
    }
    Object.defineProperty(modelClass.prototype, key, descriptor)
  }
  return modelClass
}
const stamp = { updatedAt: [readonly, date('updated_at')] }

class Contact extends Model {
  static table = 'contacts'
}
decorate(Contact, {
  displayName: [field('display_name')],
  relationship: [field('relationship')],
  circle: [field('circle')],
  cadenceDays: [field('cadence_days')],
  preferredKind: [field('preferred_kind')],
  notes: [field('notes')],
  birthday: [field('birthday')],
  snoozedUntil: [field('snoozed_until')],
  archived: [field('archived')],
  tags: [json('tags', (raw) => (Array.isArray(raw) ? raw : []))],
  ...stamp,
})

class Interaction extends Model {
  static table = 'interactions'
}
decorate(Interaction, {
  contactIds: [json('contact_ids', (raw) => (Array.isArray(raw) ? raw : []))],
  kind: [field('kind')],
  occurredAt: [date('occurred_at')],
  durationMin: [field('duration_min')],
  initiatedBy: [field('initiated_by')],
  quality: [field('quality')],
  feltCloser: [field('felt_closer')],
  note: [field('note')],
  ...stamp,
})

class Reflection extends Model {
  static table = 'reflections'
}
decorate(Reflection, {
  occurredAt: [date('occurred_at')],
  mood: [field('mood')],
  body: [field('body')],
  gratitude: [field('gratitude')],
  interactionId: [field('interaction_id')],
  ucla3: [json('ucla3', asIs)],
  lsns6: [json('lsns6', asIs)],
  who5: [json('who5', asIs)],
  ...stamp,
})

class CheckIn extends Model {
  static table = 'check_ins'
}
decorate(CheckIn, {
  occurredAt: [date('occurred_at')],
  status: [field('status')],
  mood: [field('mood')],
  note: [field('note')],
  ...stamp,
})

class Settings extends Model {
  static table = 'settings'
}
decorate(Settings, {
  timeZone: [field('time_zone')],
  nudgesEnabled: [field('nudges_enabled')],
  maxNudgesPerWeek: [field('max_nudges_per_week')],
  rulesDisabled: [json('rules_disabled', (raw) => (Array.isArray(raw) ? raw : []))],
  ...stamp,
})

class Insight extends Model {
  static table = 'insights'
}
decorate(Insight, {
  rule: [field('rule')],
  contactId: [field('contact_id')],
  title: [field('title')],
  body: [field('body')],
  evidence: [json('evidence', asIs)],
  status: [field('status')],
  raisedAt: [date('raised_at')],
  ...stamp,
})

class CareSummary extends Model {
  static table = 'care_summaries'
}
decorate(CareSummary, {
  displayName: [field('display_name')],
  summary: [json('summary', asIs)],
  ...stamp,
})

class Alert extends Model {
  static table = 'alerts'
}
decorate(Alert, {
  status: [field('status')],
  message: [field('message')],
  ...stamp,
})

const modelClasses = [
  Contact, Interaction, Reflection, CheckIn, Settings, Insight, CareSummary, Alert,
]

function makeDatabase(name) {
  const adapter = new LokiJSAdapter({
    schema,
    dbName: name,
    useWebWorker: false,
    useIncrementalIndexedDB: true, // the recommended setting; under Node (no IndexedDB) LokiJS keeps it in memory
  })
  return new Database({ adapter, modelClasses })
}

// What the app's pull asks for: the tables and columns its schema declares.
function declared(database) {
  const tables = Object.values(database.schema.tables)
  return {
    tables: tables.map((t) => t.name).join(','),
    columns: tables.flatMap((t) => t.columnArray.map((c) => `${t.name}.${c.name}`)).join(','),
  }
}

// The guide's sync function. `send` does the HTTP (a test may wrap it to lose an answer).
async function kithSync(database, { baseUrl, token, send = fetch, log }) {
  const { tables, columns } = declared(database)
  const headers = { Authorization: `Bearer ${token}` }
  await synchronize({
    database,
    sendCreatedAsUpdated: true,
    log,
    pullChanges: async ({ lastPulledAt, schemaVersion, migration }) => {
      const query = new URLSearchParams({
        last_pulled_at: String(lastPulledAt),
        schema_version: String(schemaVersion),
        migration: JSON.stringify(migration),
        tables,
        columns,
      })
      const response = await send(`${baseUrl}/v1/watermelon/pull?${query}`, { headers })
      if (!response.ok) throw new Error(`pull: ${response.status} ${await response.text()}`)
      return response.json() // { changes, timestamp[, experimentalStrategy] }
    },
    pushChanges: async ({ changes, lastPulledAt }) => {
      const response = await send(`${baseUrl}/v1/watermelon/push`, {
        method: 'POST',
        headers: { ...headers, 'Content-Type': 'application/json' },
        body: JSON.stringify({ changes, lastPulledAt }),
      })
      if (!response.ok) throw new Error(`push: ${response.status} ${await response.text()}`)
    },
  })
}

module.exports = { schema, modelClasses, makeDatabase, kithSync, declared }
