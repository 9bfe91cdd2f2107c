// Where the API is. In order:
//   1. `?api=<url>` in the page's address: used and remembered in localStorage
//      (`?api=` with nothing after it forgets it again);
//   2. the remembered value;
//   3. `apiBaseUrl` in the `config.json` next to index.html (shipped empty: edit it in dist/);
//   4. the page's own origin (the console served by the gateway at /console/).

const KEY = "miraikakaku.api";

function normalize(url: string): string {
  const parsed = new URL(url, location.href);
  return `${parsed.origin}${parsed.pathname}`.replace(/\/+$/, "");
}

export async function resolveApiBase(): Promise<string> {
  const page = new URL(location.href);
  const param = page.searchParams.get("api");
  if (param !== null) {
    if (param.trim() === "") localStorage.removeItem(KEY);
    else localStorage.setItem(KEY, normalize(param));
    page.searchParams.delete("api");
    history.replaceState(null, "", page.toString());
  }
  const remembered = localStorage.getItem(KEY);
  if (remembered) return remembered;
  try {
    const response = await fetch("./config.json", { cache: "no-store" });
    if (response.ok) {
      const config = (await response.json()) as { apiBaseUrl?: unknown };
      if (typeof config.apiBaseUrl === "string" && config.apiBaseUrl.trim() !== "") {
        return normalize(config.apiBaseUrl);
      }
    }
  } catch {
    // No config.json (or not JSON): same origin.
  }
  return location.origin;
}

export function rememberApiBase(url: string | null): void {
  if (url === null) localStorage.removeItem(KEY);
  else localStorage.setItem(KEY, normalize(url));
}
