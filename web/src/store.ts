// The app's state outside any one channel: the session, my channels with
// their unread counts, the inbox stream (join requests to decide, notices)
// and the usernames seen so far. Components re-render on every change.

import { useEffect, useReducer } from "preact/hooks";
import {
  allPages,
  api,
  failure,
  isUnauthenticated,
  pause,
  readSession,
  RETRY_FIRST_MS,
  RETRY_MAX_MS,
  type Session,
  storeSession,
} from "./api";
import { Code } from "@connectrpc/connect";
import type { InboxEvent } from "./gen/atomchat/v1/inbox_pb";
import { type Channel, type JoinRequest, JoinRequestStatus } from "./gen/atomchat/v1/resources_pb";

export type LinkState = "connecting" | "live" | "reconnecting";

export interface PendingRequest {
  request: JoinRequest;
  channel: Channel;
}

export interface State {
  session: Session | null;
  loginMessage: string;
  myChannels: Channel[];
  channelsLoaded: boolean;
  channelsError: string;
  inbox: LinkState;
  /** Join requests waiting for my decision, by request id. */
  pending: Map<string, PendingRequest>;
  /** Stored inbox events, newest first. */
  notices: InboxEvent[];
  /** My pending join requests: request id by channel id. */
  asked: Map<string, bigint>;
  /** Usernames seen (members, senders), by user id. */
  users: Map<string, string>;
}

let state: State = {
  session: readSession(),
  loginMessage: "",
  myChannels: [],
  channelsLoaded: false,
  channelsError: "",
  inbox: "connecting",
  pending: new Map(),
  notices: [],
  asked: new Map(),
  users: new Map(),
};

const listeners = new Set<() => void>();

export function getState(): State {
  return state;
}

export function update(changes: Partial<State>): void {
  state = { ...state, ...changes };
  for (const listener of listeners) listener();
}

export function useStore(): State {
  const [, rerender] = useReducer((n: number) => n + 1, 0);
  useEffect(() => {
    const listener = () => rerender(0);
    listeners.add(listener);
    return () => void listeners.delete(listener);
  }, []);
  return state;
}

export function rememberUser(id: bigint, username: string): void {
  const key = id.toString();
  if (username && state.users.get(key) !== username) {
    const users = new Map(state.users);
    users.set(key, username);
    update({ users });
  }
}

export function isOwner(channel: Channel): boolean {
  return state.session !== null && channel.ownerId.toString() === state.session.userId;
}

export function canManage(channel: Channel): boolean {
  return isOwner(channel) || (state.session?.moderator ?? false);
}

let inboxStop: AbortController | null = null;

export function logIn(session: Session): void {
  storeSession(session);
  update({ session, loginMessage: "", pending: new Map(), notices: [], asked: new Map() });
  start();
}

export function logOut(reason = ""): void {
  inboxStop?.abort();
  inboxStop = null;
  storeSession(null);
  update({ session: null, loginMessage: reason, myChannels: [], channelsLoaded: false });
}

/** Logs out on an expired or revoked token; true when it did. */
export function endedSession(error: unknown): boolean {
  if (isUnauthenticated(error)) {
    logOut(failure(error).rawMessage);
    return true;
  }
  return false;
}

export async function loadMyChannels(): Promise<void> {
  try {
    const channels = await allPages(async (pageToken) => {
      const page = await api.channels.listMyChannels({ pageToken, pageSize: 200 });
      return { items: page.channels, nextPageToken: page.nextPageToken };
    });
    update({ myChannels: channels, channelsLoaded: true, channelsError: "" });
    await loadPendingRequests(channels);
  } catch (error) {
    if (!endedSession(error)) update({ channelsError: failure(error).rawMessage });
  }
}

async function loadPendingRequests(channels: Channel[]): Promise<void> {
  const pending = new Map<string, PendingRequest>();
  for (const channel of channels.filter(isOwner)) {
    const requests = await allPages(async (pageToken) => {
      const page = await api.joinRequests.listJoinRequests({
        channelId: channel.id,
        status: JoinRequestStatus.PENDING,
        pageToken,
      });
      return { items: page.joinRequests, nextPageToken: page.nextPageToken };
    });
    for (const request of requests) pending.set(request.id.toString(), { request, channel });
  }
  update({ pending });
}

/** My own pending join requests, so that "Request pending" survives a reload. */
export async function loadMyRequests(): Promise<void> {
  try {
    const requests = await allPages(async (pageToken) => {
      const page = await api.joinRequests.listMyJoinRequests({
        status: JoinRequestStatus.PENDING,
        pageToken,
        pageSize: 200,
      });
      return { items: page.joinRequests, nextPageToken: page.nextPageToken };
    });
    update({ asked: new Map(requests.map((request) => [request.channelId.toString(), request.id])) });
  } catch (error) {
    if (!endedSession(error)) update({ channelsError: failure(error).rawMessage });
  }
}

export function rememberRequest(request: JoinRequest): void {
  update({ asked: new Map(state.asked).set(request.channelId.toString(), request.id) });
}

export function settle(request: JoinRequest): void {
  const pending = new Map(state.pending);
  pending.delete(request.id.toString());
  update({ pending });
}

function applyInbox(event: InboxEvent): void {
  const { event: body } = event;
  if (event.id > 0n) {
    update({ notices: [event, ...state.notices].slice(0, 100) });
  }
  switch (body.case) {
    case "joinRequest": {
      const { joinRequest, channel } = body.value;
      if (joinRequest && channel && joinRequest.status === JoinRequestStatus.PENDING) {
        const pending = new Map(state.pending);
        pending.set(joinRequest.id.toString(), { request: joinRequest, channel });
        update({ pending });
      }
      break;
    }
    case "joinRequestDecided": {
      // Only the decision on the request now pending: a replayed older one
      // (declined, then asked again) changes nothing.
      const decided = body.value.joinRequest;
      const channelId = decided?.channelId.toString();
      if (decided && channelId && state.asked.get(channelId) === decided.id) {
        const asked = new Map(state.asked);
        asked.delete(channelId);
        update({ asked });
      }
      break;
    }
    case "membership":
      void loadMyChannels();
      break;
    case "activity": {
      const { channelId, lastSeq, readState } = body.value;
      const known = state.myChannels.some((channel) => channel.id === channelId);
      if (!known) {
        void loadMyChannels();
        break;
      }
      update({
        myChannels: state.myChannels.map((channel) =>
          channel.id === channelId ? { ...channel, lastSeq, readState: readState ?? channel.readState } : channel,
        ),
      });
      break;
    }
    default:
      break;
  }
}

/** Follows the inbox stream, resuming after the last stored event seen. */
async function followInbox(signal: AbortSignal): Promise<void> {
  let afterId: bigint | undefined;
  let retryMs = RETRY_FIRST_MS;
  let first = true;
  while (!signal.aborted) {
    update({ inbox: first ? "connecting" : "reconnecting" });
    try {
      const onHeader = () => {
        update({ inbox: "live" });
        retryMs = RETRY_FIRST_MS;
      };
      for await (const event of api.inbox.streamInbox({ afterId }, { signal, onHeader })) {
        if (event.id > 0n) afterId = event.id;
        applyInbox(event);
      }
    } catch (error) {
      if (signal.aborted || endedSession(error)) return;
      if (failure(error).code === Code.OutOfRange) afterId = undefined;
    }
    first = false;
    update({ inbox: "reconnecting" });
    await pause(retryMs, signal);
    retryMs = Math.min(retryMs * 2, RETRY_MAX_MS);
  }
}

export function start(): void {
  inboxStop?.abort();
  inboxStop = new AbortController();
  void loadMyChannels();
  void loadMyRequests();
  void followInbox(inboxStop.signal);
}
