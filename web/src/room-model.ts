// One open channel: its Subscribe stream (history, then live messages,
// updates, typing and presence), resumed after the last seq seen whenever the
// stream drops, and older messages paged in with ListMessages.

import { timestampDate } from "@bufbuild/protobuf/wkt";
import { Code } from "@connectrpc/connect";
import { api, failure, pause, RETRY_FIRST_MS, RETRY_MAX_MS } from "./api";
import type { ChatEvent } from "./gen/atomchat/v1/chat_pb";
import type { Channel, Message } from "./gen/atomchat/v1/resources_pb";
import { endedSession, rememberUser } from "./store";

/** Messages shown on opening a channel; a resume asks for everything after the last seq. */
const HISTORY_LIMIT = 50;
const OLDER_PAGE = 100;
const TYPING_GAP_MS = 2000;

export type RoomStatus =
  | { kind: "connecting" }
  | { kind: "live" }
  | { kind: "reconnecting"; reason: string }
  | { kind: "closed"; reason: string };

export interface Typist {
  username: string;
  until: number;
}

export class RoomModel {
  /** Loaded messages in seq order. */
  messages: Message[] = [];
  status: RoomStatus = { kind: "connecting" };
  online = new Set<string>();
  typing = new Map<string, Typist>();
  /** True once ListMessages has nothing older. */
  complete = false;
  /** The channel as the stream's `joined` last described it. */
  channel: Channel;
  private readonly byId = new Map<string, Message>();
  private cursor: bigint | undefined;
  private olderToken = "";
  private loadingOlder: Promise<void> | null = null;
  private lastTyping = 0;
  private readonly stop = new AbortController();
  private readonly listeners = new Set<() => void>();

  constructor(channel: Channel) {
    this.channel = channel;
  }

  get id(): bigint {
    return this.channel.id;
  }

  /** The last seq of the channel's timeline this client has seen. */
  get lastSeq(): bigint | undefined {
    return this.cursor;
  }

  message(id: bigint): Message | undefined {
    return this.byId.get(id.toString());
  }

  subscribe(listener: () => void): () => void {
    this.listeners.add(listener);
    return () => void this.listeners.delete(listener);
  }

  close(): void {
    this.stop.abort();
    this.listeners.clear();
  }

  get closed(): boolean {
    return this.stop.signal.aborted;
  }

  async follow(): Promise<void> {
    const signal = this.stop.signal;
    let retryMs = RETRY_FIRST_MS;
    while (!signal.aborted) {
      try {
        const events = api.chat.subscribe(
          {
            channelId: this.id,
            afterSeq: this.cursor,
            historyLimit: this.cursor === undefined ? HISTORY_LIMIT : undefined,
          },
          { signal },
        );
        for await (const event of events) {
          if (event.event.case === "joined") retryMs = RETRY_FIRST_MS;
          this.apply(event);
        }
        this.setStatus({ kind: "reconnecting", reason: "" });
      } catch (error) {
        if (signal.aborted || endedSession(error)) return;
        const problem = failure(error);
        if (problem.code === Code.PermissionDenied || problem.code === Code.NotFound) {
          this.setStatus({ kind: "closed", reason: problem.rawMessage });
          return;
        }
        if (problem.code === Code.OutOfRange) this.cursor = undefined;
        this.setStatus({ kind: "reconnecting", reason: problem.rawMessage });
      }
      await pause(retryMs, signal);
      retryMs = Math.min(retryMs * 2, RETRY_MAX_MS);
    }
  }

  /** Pages older messages in; resolves when a page (or nothing) arrived. */
  loadOlder(): Promise<void> {
    if (this.complete) return Promise.resolve();
    this.loadingOlder ??= this.fetchOlder().finally(() => {
      this.loadingOlder = null;
    });
    return this.loadingOlder;
  }

  /** Loads older pages until the message with `seq` (or the start) is here. */
  async reach(seq: bigint): Promise<void> {
    while (!this.complete && !this.closed && (this.messages[0]?.seq ?? seq + 1n) > seq) {
      await this.loadOlder();
    }
  }

  /** Tells the others that I am typing, at most once every 2 seconds. */
  typed(): void {
    const now = Date.now();
    if (now - this.lastTyping >= TYPING_GAP_MS && this.status.kind === "live") {
      this.lastTyping = now;
      api.chat.setTyping({ channelId: this.id }).catch(() => undefined);
    }
  }

  /** Replaces a message with its current state (from a call's answer). */
  put(message: Message): void {
    this.store([message], false);
    this.changed();
  }

  private async fetchOlder(): Promise<void> {
    try {
      const page = await api.chat.listMessages({
        channelId: this.id,
        pageSize: OLDER_PAGE,
        pageToken: this.olderToken,
      });
      this.olderToken = page.nextPageToken;
      this.complete = !page.nextPageToken;
      const oldest = this.messages[0]?.seq;
      // Only what is older than the stream's messages: the stream's state of
      // the others is at least as new as the page's.
      const older = page.messages.filter((message) => oldest === undefined || message.seq < oldest);
      this.store(older, false);
      this.changed();
    } catch (error) {
      if (!endedSession(error)) this.complete = true;
      this.changed();
    }
  }

  private apply({ event }: ChatEvent): void {
    switch (event.case) {
      case "joined":
        if (event.value.channel) this.channel = event.value.channel;
        // A fresh join's history holds the whole timeline when it is this short.
        if (this.cursor === undefined && event.value.lastSeq <= BigInt(HISTORY_LIMIT)) this.complete = true;
        this.online = new Set(event.value.onlineUserIds.map((id) => id.toString()));
        this.setStatus({ kind: "live" });
        break;
      case "message":
        this.store([event.value], true);
        break;
      case "messages":
        this.store(event.value.messages, true);
        break;
      case "update":
        if (event.value.message) this.store([event.value.message], false);
        this.advance(event.value.seq);
        break;
      case "typing": {
        const { userId, username, expiresAt } = event.value;
        const until = expiresAt ? timestampDate(expiresAt).getTime() : Date.now() + 6000;
        this.typing.set(userId.toString(), { username, until });
        setTimeout(() => this.expireTyping(), Math.max(0, until - Date.now()) + 50);
        break;
      }
      case "presence": {
        const id = event.value.userId.toString();
        rememberUser(event.value.userId, event.value.username);
        if (event.value.online) this.online.add(id);
        else this.online.delete(id);
        break;
      }
      default:
        break;
    }
    this.changed();
  }

  private store(messages: Message[], posted: boolean): void {
    for (const message of messages) {
      rememberUser(message.senderId, message.senderUsername);
      const key = message.id.toString();
      const known = this.byId.get(key);
      this.byId.set(key, message);
      if (known) {
        const index = this.messages.indexOf(known);
        if (index >= 0) this.messages[index] = message;
      } else if (this.messages.length === 0 || message.seq > this.messages[this.messages.length - 1].seq) {
        this.messages.push(message);
      } else {
        this.messages.splice(this.insertionIndex(message.seq), 0, message);
      }
      if (posted) {
        this.typing.delete(message.senderId.toString());
        this.advance(message.seq);
      }
    }
  }

  private insertionIndex(seq: bigint): number {
    let low = 0;
    let high = this.messages.length;
    while (low < high) {
      const middle = (low + high) >> 1;
      if (this.messages[middle].seq < seq) low = middle + 1;
      else high = middle;
    }
    return low;
  }

  private advance(seq: bigint): void {
    if (this.cursor === undefined || seq > this.cursor) this.cursor = seq;
  }

  private expireTyping(): void {
    const now = Date.now();
    let expired = false;
    for (const [id, typist] of this.typing) {
      if (typist.until <= now) {
        this.typing.delete(id);
        expired = true;
      }
    }
    if (expired) this.changed();
  }

  private setStatus(status: RoomStatus): void {
    if (!this.closed) this.status = status;
  }

  private changed(): void {
    for (const listener of this.listeners) listener();
  }
}
