import { defineConfig } from "vitest/config";

export default defineConfig({
  test: {
    include: ["test/**/*.test.ts"],
    environment: "node",
    testTimeout: 10_000,
    // Every test talks to servers on 127.0.0.1 only (the gateway test excepted, when enabled).
    reporters: ["default"],
  },
});
