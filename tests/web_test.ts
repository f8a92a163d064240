/**
 * The web page in a real browser: headless Chromium driven by Playwright against the real server,
 * through the test hooks the page promises (`input[type=file]`, `select[name=op]`,
 * `button[type=submit]`, `a[download]`, the clip controls, `.job .error .solution`).
 *
 * Playwright cannot load under the test task's permissions (at import it reads the home directory,
 * the OS release and /proc/sys/fs/binfmt_misc, which Deno grants only with --allow-all), so the
 * browser runs in a child `deno run -A` of this same file (`drive` mode), which reports each case
 * as a JSON line. The server, its storage and its ffmpeg children stay in the test process, with
 * the sanitizers on.
 */
import assert from "node:assert/strict";
import { resolve } from "node:path";
import { fileURLToPath } from "node:url";
// Playwright 1.64.1 is the release built for Chromium 156, Debian bookworm's `chromium`.
import type { BrowserContext, Page } from "npm:playwright-core@1.64.1";
import {
  eventually,
  ffmpeg,
  ffmpegChildren,
  join,
  listDir,
  makeMedia,
  probeFile,
  startServer,
  storageSettles,
  tempDir,
} from "./_helpers.ts";

/** A Chromium to drive: env `MMP_CHROMIUM`, else the usual system paths. */
function findChromium(): string | undefined {
  const candidates = [
    Deno.env.get("MMP_CHROMIUM"),
    "/usr/bin/chromium",
    "/usr/bin/chromium-browser",
    "/usr/bin/google-chrome",
  ];
  for (const path of candidates) {
    if (!path) continue;
    try {
      if (Deno.statSync(path).isFile) return path;
    } catch { /* not there */ }
  }
  return undefined;
}

/** What the driver needs to know about the test's server and files. */
interface DriverConfig {
  base: string;
  storageDir: string;
  dir: string;
  chromium: string;
  /** Where to save a screenshot with finished jobs (`docs/web.png`), if anywhere. */
  screenshot?: string;
}

/** One case, as the driver reports it on a line of its stdout. */
interface CaseReport {
  name: string;
  ok: boolean;
  error?: string;
}

interface CaseContext {
  config: DriverConfig;
  context: BrowserContext;
  page: Page;
  /** The 2 s 320x240 H.264 + AAC clip every case sends. */
  input: string;
}

/** Clicks the download link of the `index`-th job and saves the file in the test's directory. */
async function downloadResult(cx: CaseContext, index: number): Promise<string> {
  const link = cx.page.locator(".job").nth(index).locator("a[download]");
  await link.waitFor({ timeout: 60_000 });
  const [download] = await Promise.all([cx.page.waitForEvent("download"), link.click()]);
  const path = join(cx.config.dir, download.suggestedFilename());
  await download.saveAs(path);
  return path;
}

/** Seeks the clip preview and waits for the frame (a string: this file has no DOM types). */
async function seekPreview(page: Page, seconds: number): Promise<void> {
  await page.evaluate(`new Promise((resolve, reject) => {
    const video = document.querySelector("#preview");
    video.addEventListener("seeked", resolve, { once: true });
    setTimeout(() => reject(new Error("the preview did not seek to ${seconds} s")), 5000);
    video.currentTime = ${seconds};
  })`);
}

/** The cases, in order: each starts from the page the previous one left. */
const CASES: [string, (cx: CaseContext) => Promise<void>][] = [
  ["the page offers every operation and the hooks it promises", async ({ page }) => {
    const options = await page.locator("select[name=op] option").all();
    const ops = await Promise.all(options.map((option) => option.getAttribute("value")));
    assert.deepEqual(ops, ["compress", "resize", "aspect", "audio", "clip", "convert"]);
    assert.equal(await page.locator("input[type=file]").count(), 1);
    assert.equal(await page.locator("button[type=submit]").count(), 1);
  }],

  ["an audio job ends with a download link to a valid MP3", async (cx) => {
    const { page } = cx;
    await page.setInputFiles("input[type=file]", cx.input);
    await page.selectOption("select[name=op]", "audio");
    await page.click("button[type=submit]");
    const path = await downloadResult(cx, 0);
    assert.match(path, /\.mp3$/);
    const info = await probeFile(path);
    assert.equal(info.audio?.codec, "mp3");
    assert.equal(info.video, undefined);
    assert.ok(Math.abs(info.duration - 2) < 0.2, `duration ${info.duration}`);
    const row = page.locator(".job").nth(0);
    assert.equal(await row.locator(".preview audio").count(), 1);
    assert.match(await row.locator(".sizes").innerText(), /smaller/);
  }],

  ["a clip with its range set on the preview comes back as a GIF of that range", async (cx) => {
    const { page } = cx;
    await page.setInputFiles("input[type=file]", cx.input);
    await page.selectOption("select[name=op]", "clip");
    await page.waitForFunction(`document.querySelector("#preview").readyState >= 1`);
    await seekPreview(page, 0.5);
    await page.click("#set-start");
    await seekPreview(page, 1.5);
    await page.click("#set-end");
    assert.equal(await page.inputValue("input[name=start]"), "0.5");
    assert.equal(await page.inputValue("input[name=end]"), "1.5");
    await page.selectOption("select[name=format]", "gif");
    await page.click("button[type=submit]");
    const path = await downloadResult(cx, 1);
    const info = await probeFile(path);
    assert.equal(info.video?.codec, "gif");
    assert.ok(Math.abs(info.duration - 1) < 0.25, `duration ${info.duration}`);
    assert.equal(await page.locator(".job").nth(1).locator(".preview img").count(), 1);
  }],

  ["a compress job shows its codec and quality figures beside a playable preview", async (cx) => {
    const { page } = cx;
    await page.setInputFiles("input[type=file]", cx.input);
    await page.selectOption("select[name=op]", "compress");
    await page.check("input[name=quality][value=balanced]");
    await page.click("button[type=submit]");
    const path = await downloadResult(cx, 2);
    const info = await probeFile(path);
    assert.equal(info.video?.codec, "h264");
    const row = page.locator(".job").nth(2);
    const stats = await row.locator(".stats").innerText();
    assert.match(stats, /Codec/i);
    assert.match(stats, /CRF|original/i);
    assert.match(await row.locator(".sizes").innerText(), /kB/);
    await page.waitForFunction(`document.querySelector(".job:nth-child(3) video").readyState >= 1`);
    if (cx.config.screenshot) {
      await page.mouse.move(0, 0);
      await page.screenshot({ path: cx.config.screenshot, fullPage: true });
    }
  }],

  ["cancel during the upload leaves the server's storage empty", async (cx) => {
    const { page, config } = cx;
    const big = join(config.dir, "big.mp4");
    const bytes = new Uint8Array(30 << 20);
    for (let i = 0; i < bytes.length; i += 65536) {
      crypto.getRandomValues(bytes.subarray(i, i + 65536));
    }
    await Deno.writeFile(big, bytes);
    // 2 MiB/s: the upload takes 15 s, so it is surely running when Cancel is pressed.
    const cdp = await cx.context.newCDPSession(page);
    const throttle = (bytesPerSecond: number) =>
      cdp.send("Network.emulateNetworkConditions", {
        offline: false,
        latency: 0,
        downloadThroughput: -1,
        uploadThroughput: bytesPerSecond,
      });
    await cdp.send("Network.enable");
    await throttle(2 << 20);
    await page.setInputFiles("input[type=file]", big);
    await page.selectOption("select[name=op]", "compress");
    await page.click("button[type=submit]");
    const row = page.locator(".job").nth(3);
    const arrived = await eventually(
      async () => (await listDir(config.storageDir)).length > 0,
      10_000,
    );
    assert.ok(arrived, "the upload never reached the server's storage");
    assert.equal(await row.getAttribute("data-state"), "uploading");
    await row.locator("button.cancel").click();
    await page.waitForSelector(".job:nth-child(4)[data-state=cancelled]", { timeout: 10_000 });
    assert.deepEqual(await storageSettles(config.storageDir, 10_000), []);
    assert.equal(await row.locator("a[download]").count(), 0);
    await throttle(-1);
    await cdp.detach();
  }],

  ["an image sent for resize shows the server's description and solution", async (cx) => {
    const { page, config } = cx;
    const image = join(config.dir, "photo.png");
    await ffmpeg(["-f", "lavfi", "-i", "color=c=teal:s=64x64", "-frames:v", "1", image]);
    // What the API answers for this upload, to compare with what the page shows.
    const answer = await fetch(`${config.base}api/jobs?op=resize&resolution=720p&name=photo.png`, {
      method: "POST",
      headers: { "Content-Type": "image/png" },
      body: await Deno.readFile(image),
    });
    const expected = await answer.json();
    assert.ok(answer.status >= 400, `HTTP ${answer.status}`);
    assert.ok(expected.description && expected.solution, JSON.stringify(expected));
    await page.setInputFiles("input[type=file]", image);
    await page.selectOption("select[name=op]", "resize");
    await page.click("button[type=submit]");
    const row = page.locator(".job").nth(4);
    await row.locator(".error .solution").waitFor({ timeout: 20_000 });
    assert.equal(await row.locator(".error .description").innerText(), expected.description);
    assert.equal(await row.locator(".error .solution").innerText(), expected.solution);
    assert.equal(await row.getAttribute("data-state"), "failed");
    assert.equal(await row.locator("a[download]").count(), 0);
  }],
];

/** Drive mode: runs the cases in Chromium, one JSON line each; stops at the first failure. */
async function drive(config: DriverConfig): Promise<void> {
  const { chromium } = await import("npm:playwright-core@1.64.1");
  // Playwright adds --no-sandbox itself (its default chromiumSandbox: false), so root works.
  const browser = await chromium.launch({ executablePath: config.chromium });
  const report = (line: CaseReport) => console.log(JSON.stringify(line));
  try {
    const context = await browser.newContext({
      viewport: { width: 960, height: 900 },
      acceptDownloads: true,
    });
    const page = await context.newPage();
    const pageErrors: string[] = [];
    page.on("pageerror", (error) => pageErrors.push(error.message));
    await page.goto(config.base);
    const input = await makeMedia(join(config.dir, "holiday.mp4"));
    const cx: CaseContext = { config, context, page, input };
    for (const [name, run] of CASES) {
      try {
        await run(cx);
        if (pageErrors.length) {
          throw new Error(`Script errors in the page: ${pageErrors.join("; ")}`);
        }
        report({ name, ok: true });
      } catch (error) {
        report({
          name,
          ok: false,
          error: error instanceof Error ? error.stack ?? error.message : String(error),
        });
        Deno.exitCode = 1;
        break;
      }
    }
  } finally {
    await browser.close();
  }
}

if (import.meta.main && Deno.args[0] === "drive") await drive(JSON.parse(Deno.args[1]!));

/** Splits a byte stream into lines. */
async function* lines(stream: ReadableStream<Uint8Array>): AsyncGenerator<string> {
  let rest = "";
  for await (const chunk of stream.pipeThrough(new TextDecoderStream())) {
    const parts = (rest + chunk).split("\n");
    rest = parts.pop()!;
    yield* parts;
  }
  if (rest) yield rest;
}

const CHROMIUM = findChromium();

Deno.test({
  name: "web page in Chromium: audio, GIF and compress jobs, cancel mid-upload, error solutions",
  ignore: CHROMIUM === undefined,
  async fn(t) {
    await using dir = await tempDir();
    await using srv = await startServer({ http: { port: 0 } });
    assert.ok(srv.httpPort, "the server has no HTTP port");
    const config: DriverConfig = {
      base: `${srv.httpUrl}/`,
      storageDir: srv.storageDir,
      dir: dir.path,
      chromium: CHROMIUM!,
    };
    const screenshot = Deno.env.get("MMP_WEB_SCREENSHOT");
    if (screenshot) config.screenshot = resolve(screenshot);
    const child = new Deno.Command(Deno.execPath(), {
      args: ["run", "-A", fileURLToPath(import.meta.url), "drive", JSON.stringify(config)],
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
      env: { NO_COLOR: "1" },
    }).spawn();
    const stderr = new Response(child.stderr).text();
    const reports = lines(child.stdout);
    const deadline = setTimeout(() => {
      try {
        child.kill("SIGKILL");
      } catch { /* ended already */ }
    }, 90_000);
    let ended = false;
    try {
      for (const [name] of CASES) {
        await t.step(name, async () => {
          if (ended) throw new Error("Not run: the browser driver had ended");
          const next = await reports.next();
          ended = next.done === true;
          if (next.done) throw new Error(`The browser driver ended early: ${await stderr}`);
          const report: CaseReport = JSON.parse(next.value);
          assert.equal(report.name, name);
          if (!report.ok) throw new Error(report.error);
        });
      }
    } finally {
      for await (const _ of reports); // drain
      clearTimeout(deadline);
      const status = await child.status;
      await stderr;
      assert.equal(status.code, 0, "the browser driver failed");
    }
    assert.deepEqual(await storageSettles(srv.storageDir), []);
    assert.deepEqual(await ffmpegChildren(), []);
  },
});
