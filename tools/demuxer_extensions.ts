/**
 * Checks `DEMUXER_EXTENSIONS` (src/protocol/media_type.ts) against an ffmpeg build: prints each
 * allowed demuxer's declared extensions that the table lacks, and each extension that only denied
 * demuxers declare yet the table accepts. Run it after a new ffmpeg adds or changes demuxers:
 *
 *     deno run --allow-run --allow-env tools/demuxer_extensions.ts [FFMPEG]
 *
 * @module
 */
import { DENIED_DEMUXERS, isUnclassified, listDemuxers, shortName } from "../src/media/demuxers.ts";
import { DEMUXER_EXTENSIONS, INPUT_EXTENSIONS } from "../src/protocol/media_type.ts";

/** The extensions `ffmpeg -h demuxer=NAME` declares ("Common extensions: a,b,c."). */
async function declared(ffmpeg: string, demuxer: string): Promise<string[]> {
  const { stdout } = await new Deno.Command(ffmpeg, {
    args: ["-hide_banner", "-h", `demuxer=${shortName(demuxer)}`],
    stdin: "null",
    stdout: "piped",
    stderr: "null",
  }).output();
  const line = /Common extensions: (.*)\./.exec(new TextDecoder().decode(stdout))?.[1];
  return line ? line.split(",").map((e) => e.trim().toLowerCase()) : [];
}

/** Left out of the table on purpose (see its comment in src/protocol/media_type.ts). */
const LEFT_OUT = new Set(["avs", "ty+"]);

const ffmpeg = Deno.args[0] ?? Deno.env.get("MMP_FFMPEG") ?? "ffmpeg";
const demuxers = await listDemuxers(ffmpeg);
const unclassified = demuxers.filter(isUnclassified);
if (unclassified.length > 0) console.log(`unclassified (decide first): ${unclassified.join(" ")}`);
const allowedExtensions = new Set<string>();
const deniedExtensions = new Set<string>();
for (const demuxer of demuxers.filter((d) => !isUnclassified(d))) {
  const extensions = await declared(ffmpeg, demuxer);
  if (DENIED_DEMUXERS.has(demuxer)) {
    extensions.forEach((e) => deniedExtensions.add(e));
    continue;
  }
  extensions.forEach((e) => allowedExtensions.add(e));
  const listed = new Set(DEMUXER_EXTENSIONS[shortName(demuxer)]?.split(" ") ?? []);
  const missing = extensions.filter((e) => !listed.has(e) && !LEFT_OUT.has(e));
  if (missing.length > 0) console.log(`${shortName(demuxer)}: add ${missing.join(" ")}`);
}
const leaks = [...deniedExtensions].filter((e) =>
  !allowedExtensions.has(e) && INPUT_EXTENSIONS.has(e)
);
if (leaks.length > 0) console.log(`accepted, yet only denied demuxers declare: ${leaks.join(" ")}`);
