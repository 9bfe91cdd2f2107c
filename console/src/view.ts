import type { App } from "./app.ts";

/** What a view returns: a clean-up run when the route changes (close streams, charts). */
export type Cleanup = (() => void) | void;
export type View = (main: HTMLElement, app: App, params: string[]) => Cleanup | Promise<Cleanup>;
