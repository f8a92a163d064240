/** The web page's files: served from these URL paths only, embedded by `deno compile --include`. */
const PAGE_FILES: Readonly<Record<string, { file: string; type: string }>> = {
  "/": { file: "index.html", type: "text/html; charset=utf-8" },
  "/app.js": { file: "app.js", type: "text/javascript; charset=utf-8" },
  "/style.css": { file: "style.css", type: "text/css; charset=utf-8" },
};

/** The page's files in memory, by URL path; a file that is missing is simply absent. */
export type PageAssets = ReadonlyMap<string, { body: Uint8Array; type: string }>;

/** Reads the page's files once, at start-up. No path from a URL ever reaches the disk. */
export async function loadPage(): Promise<PageAssets> {
  const assets = new Map<string, { body: Uint8Array; type: string }>();
  for (const [path, { file, type }] of Object.entries(PAGE_FILES)) {
    try {
      assets.set(path, {
        body: await Deno.readFile(new URL(`./page/${file}`, import.meta.url)),
        type,
      });
    } catch (err) {
      if (!(err instanceof Deno.errors.NotFound)) throw err;
    }
  }
  return assets;
}

/** Whether `path` is one of the page's URL paths. */
export function isPagePath(path: string): boolean {
  return Object.hasOwn(PAGE_FILES, path);
}

/** The answer for a page path, or undefined when its file is missing. */
export function pageResponse(
  assets: PageAssets,
  path: string,
  head: boolean,
): Response | undefined {
  const asset = assets.get(path);
  if (!asset) return undefined;
  return new Response(head ? null : asset.body.slice(), {
    headers: {
      "Content-Type": asset.type,
      "Content-Length": String(asset.body.length),
      "Cache-Control": "no-cache",
    },
  });
}
