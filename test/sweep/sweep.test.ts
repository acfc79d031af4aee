/**
 * The reliability sweep's fast subset (issue 16, item 5): every bad or odd
 * input — specs, CLI options, IR and pattern text, weights, runtime calls,
 * compiled folders — must end in a clear turbograph error or be accepted and
 * work. The full sweep is `npx tsx test/sweep/run.ts`.
 */

import { test } from "uvu";
import * as assert from "uvu/assert";
import { countOutcomes, goodOutcomes, runSweep } from "./run.ts";

test("fast sweep: no hang, crash, stack trace, internal or raw library error, nothing broken accepted, nothing written outside", async () => {
  const results = await runSweep({ fast: true });
  assert.ok(results.length >= 150, `the fast subset ran ${results.length} cases`);
  const counts = countOutcomes(results);
  assert.ok((counts.get("clear error") ?? 0) > 0 && (counts.get("accepted and works") ?? 0) > 0, "both good outcomes occur");
  const bad = results.filter((r) => !goodOutcomes.includes(r.outcome)).map((r) => `${r.outcome} ${r.id}: ${r.detail}`);
  assert.equal(bad, []);
});

test.run();
