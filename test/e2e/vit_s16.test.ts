import { test } from "uvu";
import { vitConfigs } from "../../examples/vit/config.ts";
import { s16 } from "../../examples/vit/vit.ts";
import { checkAgainstEager } from "./_vit_oracle.ts";

test("compiled ViT-S/16 matches the eager ViT on wasm and cpu at batch 1 and 3", async () => {
  await checkAgainstEager(s16, vitConfigs.s16, ["wasm", "cpu"], [1, 3]);
});

test.run();
