// The API at the page's own origin: grpc-web through Envoy, with the bearer
// token of the session (kept per tab, so a reload stays logged in).

import { Code, ConnectError, createClient, type Interceptor } from "@connectrpc/connect";
import { createGrpcWebTransport } from "@connectrpc/connect-web";
import { ChannelService } from "./gen/atomchat/v1/channels_pb";
import { ChatService } from "./gen/atomchat/v1/chat_pb";
import { InboxService } from "./gen/atomchat/v1/inbox_pb";
import { JoinRequestService } from "./gen/atomchat/v1/join_requests_pb";
import { MemberService } from "./gen/atomchat/v1/members_pb";
import { UserService } from "./gen/atomchat/v1/users_pb";

const SESSION_KEY = "atomchat.session";

export interface Session {
  token: string;
  userId: string;
  username: string;
  moderator: boolean;
}

export function readSession(): Session | null {
  const stored = sessionStorage.getItem(SESSION_KEY);
  return stored ? (JSON.parse(stored) as Session) : null;
}

export function storeSession(session: Session | null): void {
  if (session) {
    sessionStorage.setItem(SESSION_KEY, JSON.stringify(session));
  } else {
    sessionStorage.removeItem(SESSION_KEY);
  }
}

const withToken: Interceptor = (next) => (request) => {
  const session = readSession();
  if (session) {
    request.header.set("authorization", `Bearer ${session.token}`);
  }
  return next(request);
};

const transport = createGrpcWebTransport({
  baseUrl: window.location.origin,
  interceptors: [withToken],
});

export const api = {
  users: createClient(UserService, transport),
  channels: createClient(ChannelService, transport),
  joinRequests: createClient(JoinRequestService, transport),
  members: createClient(MemberService, transport),
  chat: createClient(ChatService, transport),
  inbox: createClient(InboxService, transport),
};

export function failure(error: unknown): ConnectError {
  return ConnectError.from(error);
}

export function errorText(error: unknown): string {
  return failure(error).rawMessage;
}

export function isUnauthenticated(error: unknown): boolean {
  return failure(error).code === Code.Unauthenticated;
}

/** Every page of a paged list. */
export async function allPages<T>(
  load: (pageToken: string) => Promise<{ items: T[]; nextPageToken: string }>,
): Promise<T[]> {
  const items: T[] = [];
  let pageToken = "";
  do {
    const page = await load(pageToken);
    items.push(...page.items);
    pageToken = page.nextPageToken;
  } while (pageToken);
  return items;
}

/** A random version 4 UUID; also where crypto.randomUUID is missing (plain-HTTP hosts). */
export function newClientMessageId(): string {
  const bytes = crypto.getRandomValues(new Uint8Array(16));
  bytes[6] = (bytes[6] & 0x0f) | 0x40;
  bytes[8] = (bytes[8] & 0x3f) | 0x80;
  const hex = Array.from(bytes, (byte) => byte.toString(16).padStart(2, "0")).join("");
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
}

export function pause(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    const timer = setTimeout(resolve, ms);
    signal.addEventListener(
      "abort",
      () => {
        clearTimeout(timer);
        resolve();
      },
      { once: true },
    );
  });
}

export const RETRY_FIRST_MS = 500;
export const RETRY_MAX_MS = 10_000;
