// Removes dist/ before a build, so files of deleted modules do not linger.
import { rm } from "node:fs/promises";
await rm(new URL("../dist", import.meta.url), { recursive: true, force: true });
