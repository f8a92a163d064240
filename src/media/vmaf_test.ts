import assert from "node:assert/strict";
import { join } from "node:path";
import { hasLibvmaf, measureVmaf } from "./vmaf.ts";
import { vmafFfmpeg } from "../../tests/_helpers.ts";

Deno.test("libvmaf is detected where it exists and not in Debian's ffmpeg", async (t) => {
  assert.equal(await hasLibvmaf("ffmpeg"), false);
  assert.equal(await hasLibvmaf("/nonexistent/ffmpeg"), false);
  const vmaf = vmafFfmpeg();
  await t.step({
    name: "an ffmpeg with libvmaf scores VMAF and VMAF NEG",
    ignore: vmaf === undefined,
    async fn() {
      assert.equal(await hasLibvmaf(vmaf!), true);
      const dir = await Deno.makeTempDir();
      try {
        const reference = join(dir, "ref.mkv");
        const worse = join(dir, "worse.mp4");
        const run = (args: string[]) =>
          new Deno.Command("ffmpeg", { args: ["-v", "error", "-y", ...args], stdin: "null" })
            .output();
        // deno-fmt-ignore
        await run(["-f", "lavfi", "-i", "testsrc2=size=160x120:rate=25:duration=1", "-c:v", "ffv1", reference]);
        await run(["-i", reference, "-c:v", "libx264", "-crf", "40", worse]);
        const options = { ffmpeg: vmaf!, frameRate: 25, width: 160, height: 120, scratchDir: dir };
        const same = await measureVmaf(reference, reference, options);
        const lower = await measureVmaf(worse, reference, options);
        assert.ok(same.vmaf > 95, `${same.vmaf}`);
        assert.ok(lower.vmaf < same.vmaf - 5, `${lower.vmaf} vs ${same.vmaf}`);
        assert.ok(lower.vmafNeg <= lower.vmaf + 0.5);
      } finally {
        await Deno.remove(dir, { recursive: true });
      }
    },
  });
});
