// The console's shared state: the client, the signed-in user, the notification feed.
import {
  createMiraiClient,
  unwrap,
  WebStorageTokenStore,
  type EventStream,
  type MiraiClient,
  type Notification,
  type NotificationEvent,
  type User,
} from "@miraikakaku/client";

export interface App {
  apiBase: string;
  mirai: MiraiClient;
  user: User | null;
  unread: number;
  /** Newest first; what the feed has seen this page (the list page loads the rest). */
  feed: Notification[];
  /** Called after state changes that the header shows (user, unread count). */
  onChange: Set<() => void>;
  /** Called for each notification that arrives live. */
  onNotification: Set<(n: NotificationEvent) => void>;
  stream: EventStream | null;
  /** "connecting", "live" or "offline", for the header. */
  feedState: "connecting" | "live" | "offline";
}

export function createApp(apiBase: string, onSessionExpired: () => void): App {
  // localStorage keeps the session across reloads; the key names the API so that two stacks
  // (or a changed ?api=) do not share tokens.
  const tokenStore = new WebStorageTokenStore(localStorage, `miraikakaku.tokens@${apiBase}`);
  const mirai = createMiraiClient({ baseUrl: apiBase, tokenStore, onSessionExpired });
  return {
    apiBase,
    mirai,
    user: null,
    unread: 0,
    feed: [],
    onChange: new Set(),
    onNotification: new Set(),
    stream: null,
    feedState: "offline",
  };
}

export function changed(app: App): void {
  for (const listener of app.onChange) listener();
}

/** Reads the account and starts the live feed; false when not signed in. */
export async function startSession(app: App): Promise<boolean> {
  if (!(await app.mirai.isSignedIn())) return false;
  app.user = await unwrap(app.mirai.api.GET("/v1/me"));
  startFeed(app);
  changed(app);
  void refreshUnread(app);
  return true;
}

export async function refreshUnread(app: App): Promise<void> {
  try {
    const count = await unwrap(app.mirai.api.GET("/v1/notifications/unread-count"));
    app.unread = count.unread_count ?? app.unread;
    changed(app);
  } catch {
    // The badge keeps its last value; the notifications page shows errors.
  }
}

function startFeed(app: App): void {
  app.stream?.close();
  app.feedState = "connecting";
  app.stream = app.mirai.streams.notifications({
    onOpen: ({ reconnected }) => {
      app.feedState = "live";
      changed(app);
      // The gateway replays what was missed (Last-Event-ID); the count is re-read anyway.
      if (reconnected) void refreshUnread(app);
    },
    // The gateway ends the stream when the access token expires; the client reconnects with
    // a fresh one and Last-Event-ID, and the gateway replays what was missed.
    onStreamError: () => {
      app.feedState = "connecting";
      changed(app);
    },
    onError: (_error, willReconnect) => {
      app.feedState = willReconnect ? "connecting" : "offline";
      changed(app);
    },
    onNotification: (n) => {
      if (!app.feed.some((f) => f.notification_id === n.notification_id)) app.feed.unshift(n);
      app.unread = n.unread_count;
      for (const listener of app.onNotification) listener(n);
      changed(app);
    },
  });
}

export function stopSession(app: App): void {
  app.stream?.close();
  app.stream = null;
  app.feedState = "offline";
  app.user = null;
  app.unread = 0;
  app.feed = [];
  changed(app);
}
