// A small typed program against the client generated from schemas/openapi.json by
// openapi-typescript: push a contact and an interaction, pull them back, branch on the
// table. tests/unit/test_openapi_clients.py compiles it with `tsc --strict`; if the
// document loses a table's field types, a line below stops type-checking.
import type { components, paths } from "./kith";

type PushRequest = components["schemas"]["PushRequest"];
type PushResponse =
  paths["/v1/sync/push"]["post"]["responses"]["200"]["content"]["application/json"];
type PullRequest = paths["/v1/sync/pull"]["post"]["requestBody"]["content"]["application/json"];
type PullResponse =
  paths["/v1/sync/pull"]["post"]["responses"]["200"]["content"]["application/json"];
type PushConflict =
  paths["/v1/sync/push"]["post"]["responses"]["409"]["content"]["application/problem+json"];
type ContactFields = components["schemas"]["ContactFields"];

async function call<Req, Res>(base: string, path: string, token: string, body: Req): Promise<Res> {
  const response = await fetch(base + path, {
    method: "POST",
    headers: { "content-type": "application/json", authorization: `Bearer ${token}` },
    body: JSON.stringify(body),
  });
  if (response.status === 409) {
    const problem = (await response.json()) as PushConflict;
    const code: "batch_id_reused" = problem.code; // the only 409 a push answers
    throw new Error(code);
  }
  return (await response.json()) as Res;
}

export async function pushThenPull(base: string, token: string, device: string): Promise<string[]> {
  const push: PushRequest = {
    device_id: device,
    batch_id: "batch-0000001",
    schema_version: 1,
    changes: [
      {
        table: "contacts",
        id: "contact-0001",
        hlc: "1763764200000-0000-" + device,
        deleted: false,
        fields: { display_name: "Ana", circle: "inner", cadence_days: 7, tags: ["family"] },
      },
      {
        table: "interactions",
        id: "interaction-0001",
        hlc: "1763764200000-0001-" + device,
        deleted: false,
        fields: {
          contact_ids: ["contact-0001"],
          kind: "in_person",
          occurred_at: "2026-11-21T18:30:00+01:00",
          quality: 5,
        },
      },
    ],
  };
  const pushed = await call<PushRequest, PushResponse>(base, "/v1/sync/push", token, push);
  const seq: number = pushed.seq;

  const pull: PullRequest = { schema_version: 1, cursor: null, limit: 100 };
  const page = await call<PullRequest, PullResponse>(base, "/v1/sync/pull", token, pull);
  const names: string[] = [];
  for (const change of page.changes) {
    switch (change.table) {
      case "contacts": {
        const fields: ContactFields = change.fields;
        const circle: "inner" | "close" | "social" | "wider" | undefined = fields.circle;
        if (fields.display_name !== undefined) names.push(`${fields.display_name} (${circle})`);
        break;
      }
      case "interactions": {
        const quality: number | null | undefined = change.fields.quality;
        const with_: string[] | undefined = change.fields.contact_ids;
        names.push(`met ${with_?.length ?? 0} (quality ${quality ?? "-"})`);
        break;
      }
      case "check_ins": {
        const status: "ok" | "not_great" | "need_help" | undefined = change.fields.status;
        names.push(`check-in ${status}`);
        break;
      }
      default:
        break;
    }
  }
  names.push(`seq ${seq}, more: ${page.has_more}`);
  return names;
}
