import { test } from "uvu";
import { vitConfigs } from "../../examples/vit/config.ts";
import { tiny } from "../../examples/vit/vit.ts";
import { checkAgainstEager } from "./_vit_oracle.ts";

test("compiled tiny ViT matches the eager ViT on wasm and cpu at batch 1 and 3", async () => {
  await checkAgainstEager(tiny, vitConfigs.tiny, ["wasm", "cpu"], [1, 3]);
});

test.run();
