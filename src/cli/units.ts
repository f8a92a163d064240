const SIZE_UNITS: Readonly<Record<string, number>> = {
  "": 1,
  b: 1,
  kb: 1e3,
  mb: 1e6,
  gb: 1e9,
  tb: 1e12,
  kib: 2 ** 10,
  mib: 2 ** 20,
  gib: 2 ** 30,
  tib: 2 ** 40,
};

/** Parses `200MB`, `4TB`, `4TiB` or a plain byte count into bytes. */
export function parseSize(text: string): number {
  const match = /^\s*(\d+(?:\.\d+)?)\s*([kmgt]i?b|b)?\s*$/i.exec(text);
  const unit = SIZE_UNITS[(match?.[2] ?? "").toLowerCase()];
  if (!match || unit === undefined) {
    throw new RangeError(`Cannot parse size "${text}": use bytes or a unit such as 200MB or 4TiB`);
  }
  const bytes = Math.floor(Number(match[1]) * unit);
  if (!Number.isSafeInteger(bytes)) throw new RangeError(`Cannot parse size "${text}": too large`);
  return bytes;
}

const DURATION_UNITS: Readonly<Record<string, number>> = {
  ms: 1,
  s: 1000,
  m: 60_000,
  h: 3_600_000,
};

/** Parses `500ms`, `5s`, `2m`, `1h` or plain seconds into milliseconds. */
export function parseDuration(text: string): number {
  const match = /^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h)?\s*$/i.exec(text);
  if (!match) throw new RangeError(`Cannot parse duration "${text}": use a form such as 5s or 2m`);
  return Math.round(Number(match[1]) * DURATION_UNITS[(match[2] ?? "s").toLowerCase()]!);
}

/** Parses a time position: seconds (`8.5`) or `[HH:]MM:SS[.fff]`; returns seconds. */
export function parseTimestamp(value: string | number): number {
  if (typeof value === "number") {
    if (!Number.isFinite(value) || value < 0) throw new RangeError(`Invalid time: ${value}`);
    return value;
  }
  const seconds = /^\d+(?:\.\d+)?$/.exec(value);
  if (seconds) return Number(value);
  const clock = /^(?:(\d{1,2}):)?([0-5]?\d):([0-5]\d(?:\.\d{1,6})?)$/.exec(value);
  if (!clock) throw new RangeError(`Invalid time "${value}": use seconds or [HH:]MM:SS[.fff]`);
  return Number(clock[1] ?? 0) * 3600 + Number(clock[2]) * 60 + Number(clock[3]);
}

/** `1.5 MB`-style size for people. */
export function formatBytes(bytes: number): string {
  const units = ["B", "KB", "MB", "GB", "TB"];
  let value = bytes;
  let unit = 0;
  while (value >= 1000 && unit < units.length - 1) {
    value /= 1000;
    unit++;
  }
  return `${unit === 0 ? value : value.toFixed(value < 10 ? 2 : 1)} ${units[unit]}`;
}
